"""The http probe's own plain-HTTP path answers exactly as its httpx path does.

bench/http_equivalence.py runs some 300 cases (well-formed, odd and broken responses,
redirects, resets, hangs, refused and unresolvable hosts) through both paths and exits 1
on any difference; this keeps that promise under test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "http_equivalence.py"


@pytest.mark.slow
def test_both_http_paths_give_identical_results():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "identical" in proc.stdout.splitlines()[-1]
