"""bench/https.py runs end to end: an https check against its TLS nginx makes one
connection and reports the certificate's expiry from it, and every figure line prints."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "https.py"


@pytest.mark.slow
def test_https_bench_runs_and_reads_expiry_from_the_checks_handshake():
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--repeat",
            "1",
            "--seconds",
            "2",
            "--checks",
            "300",
            "--reuse-checks",
            "50",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    expiry = next(line for line in lines if line.startswith("certificate expiry from"))
    assert expiry.endswith("MET"), expiry
    assert "1 connection(s) for one check" in expiry
    assert any(line.startswith("https throughput engine/raw") for line in lines)
    reuse = next(line for line in lines if "reuse_connections:" in line)
    fresh = next(line for line in lines if "fresh handshake  :" in line)
    assert "1.000 connections per check" in fresh
    assert "0 failed" in reuse
