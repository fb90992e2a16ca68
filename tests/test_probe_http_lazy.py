"""A probe worker running plain http checks never imports httpx nor loads a CA store.

httpx and a TLS context cost a worker some 8 MB; plain http (and https) requests go out on
the probe's own path (http_plain_hop.py), and httpx loads only for what needs it (a proxy,
a redirect, an unusual request). These tests run a real daemon with one real worker
process and read the worker's own `sys.modules` as it exits; the first-request builder
that makes it possible is compared with httpx's on many requests.
"""

from __future__ import annotations

import datetime as dt
import json
import string
import textwrap
from pathlib import Path

import anyio
import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchkeeper.engine.testing import HttpTestServer, make_certificates
from watchkeeper.plugins.probes.http import HttpOptions
from watchkeeper.plugins.probes.http_decoding import PlainHeaders, content_decoder, text_encoding
from watchkeeper.plugins.probes.http_request import Prepared, simple_request

# written into a worker's PYTHONPATH: at exit, the modules the process had imported
DUMP = textwrap.dedent(
    """
    import atexit, json, os, sys

    def _dump():
        path = os.path.join({folder!r}, f"modules-{{os.getpid()}}.json")
        with open(path, "w") as f:
            modules = sorted(k for k, v in sys.modules.items() if v is not None)
            json.dump({{"argv": sys.argv, "modules": modules}}, f)

    atexit.register(_dump)
    """
)
HEAVY = ("httpx", "httpcore", "certifi")


def run_daemon(folder: Path, checks: dict, runs: int) -> tuple[dict, list[str]]:
    """Run a daemon with one worker until every check has run `runs` times; return the
    last result of each check and the modules its worker had imported."""
    from watchkeeper.engine.daemon import load_daemon

    config = {
        "version": 1,
        "engine": {"workers": 1},
        "server": {"enabled": False},
        "state": {"type": "sqlite", "path": str(folder / "state.db")},
        "checks": {
            name: {"schedule": {"every": "1s"}, "timeout": "3s", **check}
            for name, check in checks.items()
        },
    }
    (folder / "monitor.yaml").write_text(yaml.safe_dump(config))
    daemon = load_daemon(folder / "monitor.yaml")
    results: dict[str, list] = {name: [] for name in checks}
    enough = anyio.Event()

    def record(instance, result, at) -> None:
        results[instance.check].append(result)
        if min(len(r) for r in results.values()) >= runs:
            enough.set()

    daemon.runtime.result_handlers.append(record)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.serve)
            with anyio.fail_after(30):
                await enough.wait()
            daemon.stop()

    anyio.run(main)
    dumps = [json.loads(p.read_text()) for p in folder.glob("modules-*.json")]
    workers = [d for d in dumps if d["argv"][0].endswith("worker.py")]
    assert len(workers) == 1, [d["argv"] for d in dumps]
    return {name: r[-1] for name, r in results.items()}, workers[0]["modules"]


@pytest.fixture
def dumping(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(DUMP.format(folder=str(tmp_path)))
    monkeypatch.setenv("PYTHONPATH", str(site))
    return tmp_path


@pytest.mark.slow
def test_a_worker_of_plain_http_checks_never_imports_httpx(dumping):
    with HttpTestServer() as server:
        server.reply("/ok", json={"status": "ok"}, headers={"X-Frame-Options": "DENY"})
        server.reply("/fail", status=503, body="down")
        checks = {
            "get": {
                "probe": "http",
                "url": server.url("/ok"),
                "expect": {"json": {"status": "ok"}, "headers": {"x-frame-options": "DENY"}},
            },
            "post": {
                "probe": "http",
                "url": server.url("/ok"),
                "method": "POST",
                "json_body": {"a": 1},
                "headers": {"X-Token": "t"},
                "expect": {"body_contains": "ok"},
            },
            "failing": {"probe": "http", "url": server.url("/fail")},
            "refused": {"probe": "http", "url": "http://127.0.0.1:1/"},
        }
        last, modules = run_daemon(dumping, checks, runs=2)
    assert last["get"].ok, last["get"].message
    assert last["post"].ok, last["post"].message
    assert not last["failing"].ok
    assert "HTTP 503" in last["failing"].message
    assert last["refused"].message == "cannot connect to http://127.0.0.1:1/: connection refused"
    assert last["refused"].details["error"] == "ConnectError"
    assert "watchkeeper.plugins.probes.http" in modules  # it did run the http probe
    assert [m for m in modules if m.split(".")[0] in HEAVY] == []


@pytest.mark.slow
def test_https_and_redirects_work_in_that_worker(dumping, tmp_path_factory):
    certs = make_certificates(tmp_path_factory.mktemp("pki"), valid_for=dt.timedelta(days=30))
    with HttpTestServer(certs.server_context()) as secure, HttpTestServer() as plain:
        secure.reply("/ok", json={"status": "ok"})
        plain.reply("/ok", body="fine")
        plain.reply("/moved", redirect="/ok")
        checks = {
            "https": {"probe": "http", "url": secure.url("/ok"), "ca_bundle": str(certs.ca)},
            "unverified": {"probe": "http", "url": secure.url("/ok"), "verify": False},
            "redirect": {"probe": "http", "url": plain.url("/moved")},
        }
        last, modules = run_daemon(dumping, checks, runs=2)
    for name, result in last.items():
        assert result.ok, (name, result.message)
    assert last["https"].metrics["certificate_expiry"] > 29 * 86400
    assert last["redirect"].details["redirects"] == 1
    assert "httpx" in modules  # a redirect is followed through httpx's models


# --- the first request, built without httpx, is the one httpx builds -----------------------

_PATH = st.text(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/%", max_size=12)
_HOST = st.sampled_from(
    ["127.0.0.1", "localhost", "a.b-c.example", "999.1.1.1", "127.1", "x_y", "UP.case"]
)


def _via_httpx(options: HttpOptions) -> tuple:
    """What the probe built before it had its own builder (Prepared with httpx)."""
    prepared = Prepared.__new__(Prepared)
    import weakref

    prepared._options = weakref.ref(options)
    url, headers = prepared._first()
    request = httpx.Request(
        options.method, url, headers=headers, content=options.body, json=options.json_body
    )
    https = url.scheme == "https"
    return (
        request.method.encode(),
        request.url.raw_path,
        request.headers.raw,
        request.content,
        url.raw_host.decode(),
        url.port or (443 if https else 80),
        https,
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "ftp"]),
    host=_HOST,
    port=st.sampled_from(["", ":80", ":443", ":8080", ":080", ":65535", ":70000"]),
    path=_PATH,
    query=st.one_of(st.just(""), _PATH.map(lambda q: "?" + q)),
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE"]),
    headers=st.dictionaries(
        st.sampled_from(["Accept", "accept", "User-Agent", "Host", "X-A", "Content-Length"]),
        st.sampled_from(["v", "1", "café", ""]),
        max_size=3,
    ),
    body=st.sampled_from([None, "", "text", "é"]),
    json_body=st.sampled_from([None, {"a": [1, "é"]}, 0, float("nan")]),
    auth=st.sampled_from([None, {"username": "u", "password": "p:é"}]),
)
def test_simple_requests_are_built_as_httpx_builds_them(
    scheme, host, port, path, query, method, headers, body, json_body, auth
):
    fields = {"url": f"{scheme}://{host}{port}/{path}{query}", "method": method}
    fields["headers"] = headers
    if body is not None:
        fields["body"] = body
    elif json_body is not None:
        fields["json_body"] = json_body
    if auth is not None:
        fields["auth"] = auth
    options = HttpOptions.model_validate(fields)
    mine = simple_request(options)
    if mine is None:
        return  # httpx builds this one, as before
    assert mine == _via_httpx(options)


def test_simple_requests_cover_the_usual_checks():
    for url in [
        "http://127.0.0.1:8080/health",
        "https://api.example.com/v1/status?verbose=1&x=%20y",
        "http://localhost/",
        "http://service-a.internal.svc:9000",
    ]:
        assert simple_request(HttpOptions(url=url)) is not None, url
    for url in ["http://u:p@h/", "http://h/a/../b", "http://h/#top", "http://[::1]/", "http://H/"]:
        assert simple_request(HttpOptions(url=url)) is None, url


# --- response headers, text encoding and content decoding read as httpx reads them --------

_RAW_HEADERS = [
    [(b"Content-Type", b"text/plain; charset=latin-1"), (b"X-A", b"1"), (b"x-a", b"2")],
    [(b"Content-Type", b'application/json; charset="utf-8"')],
    [(b"Content-Type", b"text/html; charset=nonsense")],
    [(b"Content-Type", b"text/html")],
    [(b"X-Caf\xc3\xa9", b"caf\xc3\xa9"), (b"Content-Type", b"text/plain;charset=UTF-8")],
    [(b"X-A", b"caf\xe9")],
    [],
]


@pytest.mark.parametrize("raw", _RAW_HEADERS)
def test_headers_and_text_encoding_read_as_httpx_reads_them(raw):
    ours, theirs = PlainHeaders(raw), httpx.Headers(raw)
    for name in ["content-type", "X-A", "x-caf\xe9" if ours.encoding != "ascii" else "x-b"]:
        assert ours.get(name) == theirs.get(name)
        assert (name in ours) == (name in theirs)
    assert text_encoding(ours) == httpx.Response(200, headers=raw).encoding


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data)


def _deflate(data: bytes, raw: bool = False) -> bytes:
    import zlib

    compressor = zlib.compressobj(wbits=-15 if raw else 15)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", _gzip(b"hello " * 100)),
        ("deflate", _deflate(b"hello")),
        ("deflate", _deflate(b"raw deflate", raw=True)),
        ("identity", b"plain"),
        ("identity, gzip", _gzip(b"two")),
        ("gzip, gzip", _gzip(_gzip(b"twice"))),
        ("GZIP ", _gzip(b"case")),
        ("gzip", b"not gzip at all"),
        ("deflate", b"\x00\x01 not deflate"),
        ("zzz", b"unknown: left as it is"),
        ("", b"empty"),
    ],
)
def test_content_decoding_matches_httpx(encoding, body):
    raw = [(b"Content-Encoding", encoding.encode())]

    def decode(decoder) -> tuple:
        try:
            out = b"".join(decoder.decode(body[i : i + 7]) for i in range(0, len(body), 7))
            return ("ok", out + decoder.flush())
        except Exception as exc:
            return (type(exc).__name__, str(exc))

    assert decode(content_decoder(raw)) == decode(
        httpx.Response(200, headers=raw)._get_content_decoder()
    )
