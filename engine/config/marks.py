"""Where each value of a loaded monitor.yaml was written, kept beside the data.

The loader hands out plain dicts and lists. Each one it read is recorded here with the
YAML node it came from, so that a problem found later (by the schema, by the
cross-reference checks) can still be reported at `file:line:col`. Plain containers, not
subclasses carrying their node: pydantic validates exact dicts and lists about a quarter
faster (it reads a subclass through its `items()`), and validation walks all of the data
at least once per load.
"""

from __future__ import annotations

from typing import Any

from watchkeeper.engine.config.problems import Mark
from watchkeeper.engine.config.pyyaml import yaml

# (file, key node or None for a list item, value node)
Entry = tuple[str, "yaml.Node | None", "yaml.Node"]

SCANNED = 16
"""Mappings up to this many entries are scanned for a key; larger ones indexed once."""


class Marks:
    """Where each mapping and list of the loaded data, and each of their entries, was
    written. Data made afterwards (a copy made while reporting) has no marks."""

    __slots__ = ("_added", "_keys", "_nodes")

    def __init__(self) -> None:
        # Both tables hold the container itself next to its id: a container that is held
        # cannot be freed, so its id cannot be taken by another object and mislead a lookup.
        # id(container) -> (container, file, node)
        self._nodes: dict[int, tuple[Any, str, yaml.Node]] = {}
        # id(container) -> (container, {key or index: entry}) for entries not written in
        # the container's own node: merged with `<<`, added by an included file, or under
        # a key the loader rewrote (`${...}` in a key)
        self._added: dict[int, tuple[Any, dict[Any, Entry]]] = {}
        # id(mapping node) -> (node, {key text: position in node.value}), built on a
        # large mapping's first lookup: a config of 10,000 checks each drawing a warning
        # would otherwise scan the whole `checks` mapping once per problem. Mappings never
        # asked about (all of them, in a clean config) cost nothing.
        self._keys: dict[int, tuple[yaml.Node, dict[str, int]]] = {}

    def record(self, container: Any, file: str, node: yaml.Node) -> None:
        """Remember that `container` was read from `node` in `file`."""
        self._nodes[id(container)] = (container, file, node)

    def record_entry(
        self, container: Any, key: Any, file: str, key_node: yaml.Node | None, node: yaml.Node
    ) -> None:
        """Remember where one entry was written when its container's node does not say."""
        held = self._added.get(id(container))
        if held is None or held[0] is not container:
            held = self._added[id(container)] = (container, {})
        held[1][key] = (file, key_node, node)

    def adopt(self, target: Any, key: Any, source: Any) -> None:
        """An entry copied or moved from `source` (a `<<` merge, an included file) into
        `target` keeps pointing where it was written."""
        written = self.entry(source, key)
        if written is not None:
            self.record_entry(target, key, *written)

    def source(self, container: Any) -> tuple[str, yaml.Node] | None:
        """Return the file and node `container` was read from, if it was read."""
        found = self._nodes.get(id(container))
        return (found[1], found[2]) if found is not None and found[0] is container else None

    def entry(self, container: Any, key: Any) -> Entry | None:
        """Return where one entry of `container` was written, if it was read."""
        ident = id(container)
        held = self._added.get(ident)
        if held is not None and held[0] is container and key in held[1]:
            return held[1][key]
        found = self._nodes.get(ident)
        if found is None or found[0] is not container:
            return None
        _, file, node = found
        entries = node.value
        if type(node) is yaml.SequenceNode:
            if type(key) is int and 0 <= key < len(entries):
                return file, None, entries[key]
            return None
        text = key if type(key) is str else str(key)
        if len(entries) <= SCANNED:
            for key_node, value_node in entries:
                if key_node.value == text:
                    return file, key_node, value_node
            return None
        keys = self._keys.get(id(node))
        if keys is None or keys[0] is not node:
            keys = self._keys[id(node)] = (node, key_positions(node))
        position = keys[1].get(text)
        if position is None:
            return None
        key_node, value_node = entries[position]
        return file, key_node, value_node

    def of(self, container: Any, key: Any, *, value: bool = True) -> Mark | None:
        """Return where an entry's value (its key, with value=False) was written.

        Falls back to the container's own place when the entry is not found, and to None
        for a container that was not read.
        """
        found = self.entry(container, key)
        if found is not None:
            file, key_node, value_node = found
            return node_mark(file, value_node if value or key_node is None else key_node)
        return self.of_self(container)

    def of_self(self, container: Any) -> Mark | None:
        """Return where a mapping or list starts, if it was read."""
        source = self.source(container)
        return node_mark(*source) if source is not None else None

    def extend(self, target: list, items: list) -> None:
        """Append another file's list to one read here, keeping where each item was written."""
        start = len(target)
        target.extend(items)
        source = self.source(items)
        if source is not None:
            file, node = source
            for offset, item_node in enumerate(node.value):
                self.record_entry(target, start + offset, file, None, item_node)


def key_positions(node: yaml.Node) -> dict[str, int]:
    """Return where each key of a mapping node is written among its entries, the first of
    a repeated key (the one the data holds)."""
    positions: dict[str, int] = {}
    for position, (key_node, _value_node) in enumerate(node.value):
        text = key_node.value
        if type(text) is str and text not in positions:
            positions[text] = position
    return positions


def node_mark(file: str, node: yaml.Node) -> Mark:
    """Return a node's position as people count: line and column from 1."""
    return Mark(file, node.start_mark.line + 1, node.start_mark.column + 1)
