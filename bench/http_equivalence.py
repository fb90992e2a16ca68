"""The http probe's two paths give the same results: python bench/http_equivalence.py

Plain http hops without a proxy go out on the probe's own asyncio protocol (see
`PlainHop` in plugins/probes/http_plain_hop.py); everything else goes through httpx. This runs
every case below twice, once on each path (`PlainHop.enabled` toggled), against raw TCP
servers that answer with well-formed, odd and broken responses (chunked, trailers, bare
LF, obs-fold, 1xx, short bodies, resets, hangs, huge heads, bad encodings...), through
redirects, and to refused, unreachable and unresolvable hosts, and compares
ok/message/metrics/details (timings and ports masked). Prints every difference; exits 1
when there is one.
"""

# ruff: noqa: E501 (the response table reads best one response a line)
import gzip
import re
import socket
import struct
import sys
import time
import zlib

from watchkeeper.engine.testing import HttpTestServer, TcpTestServer, check_once
from watchkeeper.plugins.probes.http_plain_hop import PlainHop
from watchkeeper.plugins.probes.http_request import PREPARED


def raw_server(response: bytes, then=None, read_request=True, linger0=False, delay=0.0):
    def handler(conn):
        if read_request:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
        if delay:
            time.sleep(delay)
        if response:
            conn.sendall(response)
        if then == "hang":
            time.sleep(3)
        if linger0:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    return handler


gz = gzip.compress(b'{"status":"ok"}')
df = zlib.compress(b'{"status":"ok"}')
big = b"x" * 3000
CASES = {
    "plain": b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"status":"ok"}',
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "chunk-ext": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\n\r\n",
    "chunk-trailer": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    "chunk-bad": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n",
    "chunk-short": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n50\r\nhello",
    "close": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
    "http10": b"HTTP/1.0 200 OK\r\n\r\nold",
    "204": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
    "304": b"HTTP/1.1 304 Not Modified\r\n\r\n",
    "gzip": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(gz)).encode()
    + b"\r\n\r\n"
    + gz,
    "deflate": b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: "
    + str(len(df)).encode()
    + b"\r\n\r\n"
    + df,
    "bad-gzip": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
    "br-unknown": b"HTTP/1.1 200 OK\r\nContent-Encoding: zzz\r\nContent-Length: 5\r\n\r\nhello",
    "multi-enc": b"HTTP/1.1 200 OK\r\nContent-Encoding: identity, gzip\r\nContent-Length: "
    + str(len(gz)).encode()
    + b"\r\n\r\n"
    + gz,
    "nothing": b"",
    "garbage": b"HELLO THERE\r\n\r\n",
    "partial-head": b"HTTP/1.1 200 OK\r\nContent-Le",
    "short-body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
    "100-continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "only-100": b"HTTP/1.1 100 Continue\r\n\r\n",
    "bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: one\r\n  two\r\nContent-Length: 2\r\n\r\nok",
    "latin1-hdr": b"HTTP/1.1 200 OK\r\nX-A: caf\xe9\r\nContent-Length: 2\r\n\r\nok",
    "ctrl-hdr": b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok",
    "dup-cl-same": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    "dup-cl-comma": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
    "dup-cl-diff": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    "te-gzip-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "te-and-cl": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "te-upper": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "big-head": b"HTTP/1.1 200 OK\r\n"
    + b"X-Big: "
    + b"a" * 120000
    + b"\r\nContent-Length: 2\r\n\r\nok",
    "status-999": b"HTTP/1.1 999 Weird\r\nContent-Length: 2\r\n\r\nok",
    "status-500": b"HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nboom",
    "no-reason": b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
    "empty-reason": b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok",
    "lower-http": b"http/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "http2-line": b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "cl-huge": b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nok",
    "cl-neg": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok",
    "space-name": b"HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 2\r\n\r\nok",
    "ws-before-colon": b"HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 2\r\n\r\nok",
    "empty-value": b"HTTP/1.1 200 OK\r\nX-A:\r\nX-B:   \r\nContent-Length: 2\r\n\r\nok",
    "latin1-body": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=latin-1\r\nContent-Length: 4\r\n\r\ncaf\xe9",
    "bad-charset": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=nonsense\r\nContent-Length: 4\r\n\r\ncaf\xe9",
    "big-body": b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + big,
    "big-close": b"HTTP/1.1 200 OK\r\n\r\n" + big,
    "redirect-rel": None,  # filled per run
    "multi-location": None,
}
EXTRA = [
    ("reset-before", dict(response=b"", linger0=True)),
    (
        "reset-mid",
        dict(response=b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart", linger0=True),
    ),
    ("reset-after-head-close", dict(response=b"HTTP/1.1 200 OK\r\n\r\npart", linger0=True)),
    (
        "hang-mid-body",
        dict(response=b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart", then="hang"),
    ),
    ("hang-head", dict(response=b"HTTP/1.1 200 OK\r\n", then="hang")),
    (
        "no-read",
        dict(response=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", read_request=False),
    ),
]
OPTIONS = [
    {},
    {"expect": {"json": {"status": "ok"}}},
    {
        "expect": {"body_regex": "caf.", "headers": {"x-a": "b"}},
        "method": "POST",
        "json_body": {"a": 1},
    },
    {"max_body": 10, "expect": {"body_contains": "hello"}},
    {"method": "HEAD"},
    {"extract": {"n": {"regex": "(\\d+)"}}},
]


def norm(r):
    m = {k: (round(v, 0) if k != "response_time" else "t") for k, v in r.metrics.items()}
    msg = r.message
    msg = re.sub(r"in [0-9.]+m?s(;|$)", r"in T\1", msg)
    msg = re.sub(r"127\.0\.0\.1:\d+", "HOST", msg)
    d = {
        k: (re.sub(r"127\.0\.0\.1:\d+", "HOST", v) if isinstance(v, str) else v)
        for k, v in r.details.items()
    }
    return (r.ok, msg, m, d)


def run(url, opts, timeout=1.5):
    out = []
    for enabled in (True, False):
        PlainHop.enabled = enabled
        PREPARED.clear()
        out.append(norm(check_once("http", {"url": url, **opts}, timeout=timeout)))
    return out


bad = 0
total = 0
for name, response in CASES.items():
    if response is None:
        continue
    with TcpTestServer(raw_server(response)) as srv:
        for opts in OPTIONS:
            total += 1
            fast, slow = run(f"http://127.0.0.1:{srv.port}/p", opts)
            if fast != slow:
                bad += 1
                print("DIFF", name, opts, "\n  fast", fast, "\n  httpx", slow)
for name, kw in EXTRA:
    with TcpTestServer(raw_server(**kw)) as srv:
        total += 1
        fast, slow = run(f"http://127.0.0.1:{srv.port}/p", {})
        if fast != slow:
            bad += 1
            print("DIFF", name, "\n  fast", fast, "\n  httpx", slow)
# redirects and hostnames through the real test server
with HttpTestServer() as s, HttpTestServer(host="127.0.0.1") as s2:
    s.reply("/ok", json={"status": "ok"}, headers={"X-Frame-Options": "DENY"})
    s.reply("/r1", redirect="/ok")
    s.reply("/r2", redirect=s2.url("/ok"))
    s2.reply("/ok", body="fine")
    s.reply("/loop", redirect="/loop")
    s.reply("/see", status=303, redirect="/ok")
    for path, opts in [
        ("/ok", {}),
        ("/r1", {}),
        ("/r2", {"headers": {"Authorization": "x"}}),
        ("/loop", {}),
        ("/see", {"method": "POST", "body": "x"}),
        ("/r1", {"follow_redirects": False}),
        ("/r1", {"max_redirects": 0}),
    ]:
        for host in ("127.0.0.1", "localhost"):
            total += 1
            fast, slow = run(s.url(path).replace("127.0.0.1", host), opts)
            if fast != slow:
                bad += 1
                print("DIFF", host, path, opts, "\n  fast", fast, "\n  httpx", slow)
for url in [
    "http://127.0.0.1:1/x",
    "http://localhost:1/x",
    "http://nonexistent.invalid/x",
    "http://u:p@127.0.0.1:1/x?token=abc",
    "http://[::1]:1/",
    "http://10.255.255.1:81/",
]:
    total += 1
    fast, slow = run(url, {}, timeout=1)
    if fast != slow:
        bad += 1
        print("DIFF", url, "\n  fast", fast, "\n  httpx", slow)
print(f"{total - bad}/{total} identical")
sys.exit(1 if bad else 0)
