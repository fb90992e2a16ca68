"""engine/config/pyyaml.py: PyYAML imported without compiling its reader's pattern, which
still refuses what it refused when it is used."""

from __future__ import annotations

import subprocess
import sys

import pytest

from watchkeeper.engine.config.pyyaml import NON_PRINTABLE, DeferredPattern, yaml

FRESH = """
import re
compile_before = re.compile
from watchkeeper.engine.config import loader
import yaml
from watchkeeper.engine.config.pyyaml import DeferredPattern
pattern = yaml.reader.Reader.NON_PRINTABLE
assert re.compile is compile_before, "re.compile left patched"
assert isinstance(pattern, DeferredPattern), f"PyYAML's pattern was compiled: {pattern!r}"
assert pattern._compiled is None, "compiled at import"
print("deferred")
"""


def test_reading_monitor_yaml_does_not_compile_the_pattern():
    # a fresh interpreter: this one may have imported PyYAML before the loader
    proc = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True)
    assert proc.stdout.strip() == "deferred", proc.stderr


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\ufffe", "\ud800"])
def test_the_pure_python_reader_still_refuses_unprintable_characters(char):
    with pytest.raises(yaml.reader.ReaderError):
        yaml.load(f"key: a{char}b\n", Loader=yaml.SafeLoader)


def test_the_pure_python_reader_still_reads_printable_text():
    text = "key: 'tab\there, é, ✓, \U0001f600'\n"
    assert yaml.load(text, Loader=yaml.SafeLoader) == {"key": "tab\there, é, ✓, \U0001f600"}


def test_a_deferred_pattern_is_the_compiled_one():
    import re

    deferred = DeferredPattern(NON_PRINTABLE)
    compiled = re.compile(NON_PRINTABLE)
    for text in ("plain", "a\x07b", "\U0001f600\ufffe", ""):
        assert bool(deferred.search(text)) == bool(compiled.search(text))
    assert deferred.pattern == compiled.pattern
