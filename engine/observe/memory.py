"""Keep the daemon's resident memory close to what it uses, through glibc's allocator.

Python takes objects over 512 bytes, and its own arenas, from the C allocator. glibc gives
each thread that allocates its own arena (up to eight per CPU) and keeps freed memory
mapped for reuse. A reload builds ten thousand checks' objects on a thread, then frees the
previous ones: without these, a daemon's RSS grows by some 60 MB over twenty reloads while
the objects it holds stay the same (measured at 10,000 checks). Elsewhere (musl, macOS)
both are no-ops.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

_M_ARENA_MAX = -8  # glibc's mallopt parameter
ARENAS = 2
"""Arenas the C allocator may use: the event loop's thread and the threads beside it
share two, as MALLOC_ARENA_MAX=2 would have them."""


@lru_cache(maxsize=1)
def _glibc() -> Any:
    try:
        import ctypes

        libc = ctypes.CDLL(None)  # this process's own symbols, the C library's among them
        libc.gnu_get_libc_version  # noqa: B018 (glibc's own: musl has none)
        libc.mallopt  # noqa: B018
        libc.malloc_trim  # noqa: B018
    except (ImportError, OSError, AttributeError):
        return None
    return libc


def limit_arenas() -> bool:
    """Cap the C allocator's arenas (before threads start allocating); False when it is
    not glibc's."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, ARENAS))


def release_free_memory() -> bool:
    """Give memory freed to the C allocator back to the system (after a reload has let go
    of the previous checks); True when some was."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))
