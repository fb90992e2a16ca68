"""Secrets stay masked in every form output can show them in (DESIGN.md Semantics ► Secrets).

A secret holding quotes, backslashes, newlines, `%`, braces, tabs or non-ASCII letters
reaches output escaped: Python repr in validate messages, JSON (with and without ASCII
escaping) in logs and API answers, percent-encoded in URLs, HTML-escaped on the status page,
whitespace folded in a response snippet, line by line in a table or a one-line log. None of
those forms may appear: in the Redactor's own output (many hypothesis examples), in the
CLI's output and the daemon's logs in every format, in notices, `/api/status` and `/`.
"""

from __future__ import annotations

import html
import json
import time
from urllib.parse import quote, quote_plus

import httpx
import markupsafe
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.daemon_harness import Daemon, free_port
from tests.receivers import EchoRefusal, HttpRecorder
from watchkeeper.engine.observe.redaction import MASK, MIN_LENGTH, Redactor

HOSTILE = [
    "'",
    '"',
    "\\",
    "\n",
    "%",
    "{",
    "}",
    "$",
    " ",
    "\t",
    "é",
    "ß",
    "日",
    "本",
    "😀",
    *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
]
secrets = st.text(st.sampled_from(HOSTILE), min_size=8, max_size=32).filter(
    # a secret that is mostly blanks is not a credential anyone writes
    lambda s: len(s.strip()) >= 8
)

# one of each class, for the process-launching tests (the hypothesis ones run few examples)
CHOSEN = [
    "p'ss\"wörd\\x-9",  # both quotes, a backslash, a non-ASCII letter
    "first-line-7f3a\nsecond-line-c21b",  # a multi-line secret
    "tab\tsep  spaced\t\tkey",  # tabs and runs of blanks a snippet folds
    "100%{done}$HOME-4b",  # percent, braces, a dollar
    "日本語のパスワード🔑ßé",  # non-ASCII letters and an emoji only
    "C:\\new\\table\n'ö' \"x\"",  # escape-like backslashes, a newline, quotes
]


def _repr_single(value: str) -> str:
    return repr(value + "'\"")[1:-4]  # both quotes present: Python picks '...' and escapes '


def forms(secret: str) -> set[str]:
    """Every way output may show the secret, as long as a mask must hide."""
    single = _repr_single(secret)
    found = {
        secret,
        single,  # repr, single quotes
        single.replace("\\'", "'").replace('"', '\\"'),  # repr, double quotes
        ascii(secret + "'\"")[1:-4],  # repr with \x, \u, \U escapes
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
        html.escape(secret),
        str(markupsafe.escape(secret)),  # as jinja2 escapes it: &#39; and &#34;
        " ".join(secret.split()),  # whitespace folded, as a one-line snippet shows it
    }
    found |= {line.strip() for line in secret.splitlines()}
    return {f for f in found if len(f.strip()) >= MIN_LENGTH}


def leaks(secret: str, output: str) -> list[str]:
    return sorted(f for f in forms(secret) if f in output)


# --- (1) the Redactor over text holding every form ------------------------------------------


@settings(max_examples=300, deadline=None)
@given(secret=secrets, other=secrets)
def test_redactor_masks_every_form_of_a_secret(secret, other):
    redactor = Redactor()
    redactor.add("tok-ordinary-5f1e9c2a7b")
    redactor.add(other)
    redactor.add(secret)
    embedded = [f"before {form} after" for form in sorted(forms(secret))]
    embedded.append("\n".join(f"  {line}" for line in secret.splitlines()))
    embedded.append(json.dumps({"message": f"got {secret!r}"}))
    embedded.append(json.dumps({"message": f"got {secret!r}"}, ensure_ascii=False))
    for text in embedded:
        masked = redactor.redact(text)
        assert leaks(secret, masked) == [], (text, masked)
    assert MASK in redactor.redact(secret)


def test_redactor_leaves_ordinary_text_alone():
    redactor = Redactor()
    for secret in CHOSEN:
        redactor.add(secret)
    text = 'check=api-health message="HTTP 503 from https://api.example.com (expected 2xx)"'
    assert redactor.redact(text) == text
    # a blank-only line of a multi-line secret must not blank out indentation
    redactor.add("first-part-secret\n    \nlast-part-secret")
    assert redactor.redact("    indented") == "    indented"


# --- (2) real CLI output and logs ------------------------------------------------------------


@pytest.fixture(scope="module")
def echo():
    server = EchoRefusal()
    yield server.url
    server.close()


def secret_env(chosen: list[str]) -> dict[str, str]:
    env = {f"S{i}_PASSWORD": s for i, s in enumerate(chosen)}
    env["HOOK_WEBHOOK"] = chosen[0]
    return env


def broken_config(chosen: list[str]) -> str:
    """A config whose problems quote the secrets back (pydantic and cross-reference ones)."""
    names = ", ".join(f'"${{S{i}_PASSWORD}}"' for i in range(len(chosen)))
    return (
        "version: 1\n"
        "server: {listen: '${S0_PASSWORD}'}\n"
        "checks:\n"
        "  web:\n"
        "    probe: http\n"
        "    url: http://example.com\n"
        f"    depends_on: [{names}]\n"
        "notifiers:\n"
        "  team: {type: webhook, url: '${HOOK_WEBHOOK}', timeout: '${HOOK_WEBHOOK}'}\n"
    )


def echo_config(chosen: list[str], echo_url: str, **extra) -> dict:
    """Checks posting each secret to the echo server, which quotes it in its refusal."""
    config = {
        "version": 1,
        "engine": {"workers": 0},
        "state": {"type": "sqlite", "path": "state.db"},
        "checks": {
            f"c{i}": {
                "probe": "http",
                "method": "POST",
                "url": f"{echo_url}/echo",
                "body": f"${{S{i}_PASSWORD}}",
                "timeout": "2s",
                "schedule": {"every": "1s"},
            }
            for i in range(len(chosen))
        },
        "notifiers": {"console": {"type": "log"}},
        "routes": [{"match": {}, "notify": ["console"], "group_wait": "0s"}],
    }
    config.update(extra)
    return config


def cli_outputs(tmp_path, chosen: list[str], echo_url: str) -> dict[str, str]:
    """Run validate, check and `run --once` (each log format) with the secrets set."""
    env = secret_env(chosen)
    broken = tmp_path / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "monitor.yaml").write_text(broken_config(chosen))
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(echo_config(chosen, echo_url)))
    outputs = {}
    for fmt in ("text", "json"):
        result = run_cli("validate", "--format", fmt, cwd=broken, env=env)
        assert result.code == 1, result.output
        assert "depends_on" in result.stdout, result.output  # the problems are reported
        outputs[f"validate {fmt}"] = result.output
    for fmt in ("text", "json"):
        result = run_cli("check", "--format", fmt, cwd=tmp_path, env=env)
        assert result.code == 1, result.output
        assert "HTTP 500" in result.stdout, result.output
        outputs[f"check {fmt}"] = result.output
    for fmt in ("text", "json", "journal"):
        for state in tmp_path.glob("state.db*"):
            state.unlink()  # a fresh state: every alert fires (and is logged) again
        result = run_cli("--log-format", fmt, "run", "--once", cwd=tmp_path, env=env)
        assert result.code == 1, result.output
        assert "alert firing" in result.stderr, result.output
        outputs[f"logs {fmt}"] = result.output
    return outputs


def assert_no_leak(chosen: list[str], outputs: dict[str, str]) -> None:
    found = {
        (where, secret): leaks(secret, text)
        for where, text in outputs.items()
        for secret in chosen
        if leaks(secret, text)
    }
    if found:
        shown = "\n".join(
            f"{where}: {secret!r} shows as {forms!r}" for (where, secret), forms in found.items()
        )
        pytest.fail(f"secrets leaked:\n{shown}", pytrace=False)


@pytest.mark.slow
def test_cli_output_and_logs_mask_chosen_secrets(tmp_path, echo):
    assert_no_leak(CHOSEN, cli_outputs(tmp_path, CHOSEN, echo))


@pytest.mark.slow
@settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(secret=secrets)
def test_cli_output_and_logs_mask_any_secret(tmp_path_factory, echo, secret):
    tmp_path = tmp_path_factory.mktemp("any")
    assert_no_leak([secret], cli_outputs(tmp_path, [secret], echo))


# --- (3) a running daemon: notices, /api/status and the status page -------------------------

ADMIN = "adm1n-T0ken-redaction-4c1e"


@pytest.mark.slow
def test_daemon_notices_api_and_status_page_mask_secrets(tmp_path, echo):
    with HttpRecorder() as receiver:
        port = free_port()
        config = echo_config(
            CHOSEN,
            echo,
            server={
                "listen": f"127.0.0.1:{port}",
                "title": "${S0_PASSWORD}",  # the page's title, HTML-escaped
                "admin_token": "${ADMIN_TOKEN}",
            },
            notifiers={
                "hook": {"type": "webhook", "url": receiver.url("/hook")},
                "console": {"type": "log"},
            },
            routes=[{"match": {}, "notify": ["hook", "console"], "group_wait": "0s"}],
        )
        (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(config))
        env = {**secret_env(CHOSEN), "ADMIN_TOKEN": ADMIN}
        outputs = {}
        with Daemon(tmp_path, env=env) as daemon:
            deadline = time.monotonic() + 20
            while len({r.json()["alerts"][0]["check"] for r in receiver.requests}) < len(CHOSEN):
                assert time.monotonic() < deadline, receiver.requests
                time.sleep(0.1)
            base = f"http://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {ADMIN}"}
            outputs["/api/status"] = httpx.get(f"{base}/api/status", headers=auth).text
            outputs["/"] = httpx.get(f"{base}/").text
            outputs["/ (admin)"] = httpx.get(f"{base}/", headers=auth).text
            outputs["notices"] = "\n".join(r.text for r in receiver.requests)
            outputs["log"] = daemon.log
        assert "c5" in outputs["/api/status"]
        assert "<html" in outputs["/"].lower()
    assert_no_leak(CHOSEN, outputs)
