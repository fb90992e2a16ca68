"""An example watchkeeper plugin: the `file_age` probe and the `jsonl` notifier.

The entry point `example = "watchkeeper_example"` in pyproject.toml registers this module;
watchkeeper calls its hook implementations to learn which types it provides.
"""

from __future__ import annotations

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper_example.file_age import FileAgeProbe
from watchkeeper_example.jsonl import JsonLinesNotifier

__all__ = ["FileAgeProbe", "JsonLinesNotifier"]


@hookimpl
def watchkeeper_probes():
    return [FileAgeProbe]


@hookimpl
def watchkeeper_notifiers():
    return [JsonLinesNotifier]
