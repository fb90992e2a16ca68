"""The installed watchkeeper version, as /health, the API and Sentry releases report it."""

from __future__ import annotations


def version() -> str:
    """Return the installed watchkeeper version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("watchkeeper")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"
