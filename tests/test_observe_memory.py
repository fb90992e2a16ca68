"""The daemon gives memory a reload freed back to the system (glibc's allocator)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from watchkeeper.engine.observe.memory import _glibc

# a thread allocates large blocks with small ones between them, then the large ones are
# freed: the holes stay resident until they are handed back
SCRIPT = textwrap.dedent(
    """
    import threading, psutil
    from watchkeeper.engine.observe.memory import limit_arenas, release_free_memory
    assert limit_arenas()
    rss = lambda: psutil.Process().memory_info().rss / 1e6
    freed_later, kept = [], []
    def build():
        for i in range(20_000):
            freed_later.append(bytes(8000) + bytes([i % 256]))
            kept.append(bytes(600) + bytes([i % 256]))
    thread = threading.Thread(target=build)
    thread.start()
    thread.join()
    freed_later.clear()
    freed = rss()
    released = release_free_memory()
    print(freed, rss(), released)
    """
)


@pytest.mark.skipif(_glibc() is None, reason="the C library is not glibc")
def test_freed_memory_goes_back_to_the_system():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    freed, trimmed, released = done.stdout.split()
    assert released == "True"
    assert float(freed) - float(trimmed) > 100, (freed, trimmed)  # of some 160 MB freed
