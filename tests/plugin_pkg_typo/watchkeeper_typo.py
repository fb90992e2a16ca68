"""A plugin with a misspelled hook: `watchkeeper_probez` instead of `watchkeeper_probes`."""

from __future__ import annotations

from watchkeeper.engine.hookspecs import hookimpl


@hookimpl
def watchkeeper_probez():
    return []
