"""The env probe: required settings present, values never shown."""

from __future__ import annotations

from watchkeeper.engine.testing import check_once


def test_all_present(monkeypatch):
    monkeypatch.setenv("WK_TEST_API_KEY", "sk-live-123456")
    monkeypatch.setenv("WK_TEST_REGION", "eu")
    result = check_once("env", {"require": ["WK_TEST_API_KEY", "WK_TEST_REGION"]})
    assert result.ok
    assert result.metrics == {"missing": 0}
    assert result.message == "2 required variables are set"


def test_missing_and_empty_are_named_never_valued(monkeypatch):
    monkeypatch.setenv("WK_TEST_API_KEY", "sk-live-123456")
    monkeypatch.setenv("WK_TEST_EMPTY", "  ")
    monkeypatch.delenv("WK_TEST_ABSENT", raising=False)
    result = check_once("env", {"require": ["WK_TEST_API_KEY", "WK_TEST_EMPTY", "WK_TEST_ABSENT"]})
    assert not result.ok
    assert result.metrics == {"missing": 2}
    assert result.message == "missing or empty environment variables: WK_TEST_EMPTY, WK_TEST_ABSENT"
    assert "sk-live" not in result.message


def test_one_missing(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = check_once("env", {"require": ["OPENAI_API_KEY"]})
    assert result.message == "missing or empty environment variable: OPENAI_API_KEY"
