"""The system probe on this host."""

from __future__ import annotations

import anyio
import psutil

from watchkeeper.engine.testing import check_once, open_probe


def test_host_metrics_are_ratios_and_bytes():
    result = check_once("system", {})
    assert result.ok, result.message
    m = result.metrics
    for ratio in ("cpu_usage", "memory_usage", "swap_usage"):
        assert 0 <= m[ratio] <= 1, ratio
    assert m["memory_available"] > 0
    assert m["memory_available"] <= psutil.virtual_memory().total
    for load in ("load1", "load5", "load15"):
        assert m[load] >= 0
    assert result.message.startswith("cpu ")


def test_disk_samples_per_path(tmp_path):
    result = check_once("system", {"disks": ["/", str(tmp_path)]})
    assert result.ok, result.message
    flat = result.flat_metrics()
    assert 0 < flat["disk_usage{path=/}"] < 1
    assert flat["disk_free{path=/}"] > 0  # bytes
    assert f"disk_usage{{path={tmp_path}}}" in flat
    assert {s.labels["path"] for s in result.samples} == {"/", str(tmp_path)}


def test_missing_disk_path_fails_naming_it():
    result = check_once("system", {"disks": ["/", "/wk-no-such-mount"]})
    assert not result.ok
    assert result.message.startswith("disk /wk-no-such-mount: no such path (cpu ")
    # what could be read is still reported
    assert "disk_usage{path=/}" in result.flat_metrics()
    assert "memory_usage" in result.metrics


def test_relative_disk_path_is_relative_to_the_config_folder(tmp_path):
    (tmp_path / "backups").mkdir()
    result = check_once("system", {"disks": ["backups"]}, base_dir=tmp_path)
    assert result.ok, result.message
    assert result.samples[0].labels == {"path": "backups"}


def test_cpu_usage_is_measured_between_runs():
    async def main():
        async with open_probe("system") as runner:
            await anyio.sleep(0.2)
            first = await runner.check({})
            deadline = anyio.current_time() + 0.3
            while anyio.current_time() < deadline:  # keep one CPU busy
                sum(range(10_000))
            second = await runner.check({})
            return first, second

    first, second = anyio.run(main)
    assert 0 <= first.metrics["cpu_usage"] <= 1
    assert second.metrics["cpu_usage"] > 0
