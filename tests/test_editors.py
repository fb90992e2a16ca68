"""The schema is usable by editors: the comment finds it, and a JSON Schema validator that
knows only draft 7 (as yaml-language-server does) accepts good files and flags bad ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import REPO

DOC = REPO / "docs" / "editors.md"
SCHEMA = REPO / "schema" / "monitor.schema.json"
COMMENT = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")
CONFIGS = sorted([REPO / "monitor.yaml", *(REPO / "examples").glob("*.yaml")])
VALIDATORS = [jsonschema.Draft202012Validator, jsonschema.Draft7Validator]

# keywords whose values are schemas (or maps or lists of schemas): where a walk descends
SCHEMA_MAPS = {"properties", "patternProperties", "$defs", "definitions", "dependencies"}
SCHEMA_LISTS = {"allOf", "anyOf", "oneOf", "items"}
SCHEMA_VALUES = {
    "items",
    "additionalItems",
    "additionalProperties",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
}


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA.read_text())


def keywords(node: object, found: set[str]) -> set[str]:
    """Collect the keywords a schema uses (property names are not keywords)."""
    if not isinstance(node, dict):
        return found
    found |= set(node)
    for key, value in node.items():
        if key in SCHEMA_MAPS and isinstance(value, dict):
            for sub in value.values():
                keywords(sub, found)
        elif key in SCHEMA_LISTS and isinstance(value, list):
            for sub in value:
                keywords(sub, found)
        elif key in SCHEMA_VALUES:
            keywords(value, found)
    return found


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_configs_start_with_the_comment_pointing_at_the_schema(path):
    match = COMMENT.match(path.read_text().splitlines()[0])
    assert match, f"{path.name} must start with '# yaml-language-server: $schema=...'"
    assert (path.parent / match.group(1)).resolve() == SCHEMA.resolve()


def test_the_page_shows_the_comment_monitor_yaml_has():
    first_line = (REPO / "monitor.yaml").read_text().splitlines()[0]
    assert f"```yaml\n{first_line}\n" in DOC.read_text()
    assert "schema/monitor.schema.json" in DOC.read_text()
    assert SCHEMA.is_file()


@pytest.mark.parametrize("validator", VALIDATORS, ids=lambda v: v.__name__)
def test_monitor_yaml_is_valid_against_the_schema(schema, validator):
    validator.check_schema(schema)
    data = yaml.safe_load((REPO / "monitor.yaml").read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator(schema).iter_errors(data)]
    assert errors == []


@pytest.mark.parametrize("validator", VALIDATORS, ids=lambda v: v.__name__)
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_examples_are_valid_but_for_variables(schema, validator, path):
    """An editor may only object where a ${VARIABLE} stands for a number or the like."""
    data = yaml.safe_load(path.read_text())
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in validator(schema).iter_errors(data)
        if not (isinstance(e.instance, str) and "${" in e.instance)
    ]
    assert errors == []


@pytest.mark.parametrize(
    "check",
    [
        {"probe": "http", "url": "https://app.example.com/", "timout": "5s"},  # misspelled key
        {"probe": "http", "url": "https://app.example.com/", "timeout": "fast"},  # not a duration
        {"probe": "htp", "url": "https://app.example.com/"},  # unknown probe
        {"probe": "tcp", "host": "db", "port": "five"},  # not a number
    ],
    ids=["misspelled-key", "bad-duration", "unknown-probe", "bad-port"],
)
@pytest.mark.parametrize("validator", VALIDATORS, ids=lambda v: v.__name__)
def test_the_schema_flags_what_an_editor_should_underline(schema, validator, check):
    data = {"version": 1, "checks": {"web": check}}
    assert list(validator(schema).iter_errors(data)), f"{check} was accepted"


def test_the_schema_uses_only_what_draft_7_knows(schema):
    """yaml-language-server implements draft 7: a newer keyword would be silently ignored."""
    known = set(jsonschema.Draft7Validator.META_SCHEMA["properties"])
    # `$defs` only names where `$ref` pointers lead; the others are annotations (a secret
    # field is `writeOnly`), which change nothing a validator decides
    tolerated = {"$defs", "discriminator", "writeOnly"}
    unknown = keywords(schema, set()) - known - tolerated
    assert not unknown, f"keywords draft 7 does not know: {sorted(unknown)}"


def test_the_page_links_resolve():
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", DOC.read_text()):
        assert (DOC.parent / target).exists(), target
    assert Path(DOC.parent / "configuration.md").is_file()
