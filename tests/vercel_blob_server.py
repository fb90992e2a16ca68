"""A stand-in for Vercel Blob's API on loopback, for the vercel_blob destination's tests.

No Vercel server is reachable here, so this answers as Vercel's SDK (@vercel/blob 2.6.1,
github.com/vercel/storage at 5c2d8bffcb6b3ab87f48277be532d08c9a07bbd2, packages/blob/src)
expects and its own tests mock (index.node.test.ts): the same paths under `/api/blob`, the
same headers, the same JSON shapes, the same error bodies (`{"error": {"code": ...}}`, 403
`forbidden` for a bad token). It is strict: every request's method, path, query, headers
and body shape is checked, and anything unexpected is answered 400 and recorded in
`problems`, which the fixture asserts empty at the end: a request the real service would
refuse fails the test. Blobs live in memory.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

API = "/api/blob"
API_VERSION = "12"
STORE = "wkStand1n"
TOKEN = f"vercel_blob_rw_{STORE}_{'s3cr3t' * 5}"
MIN_PART = 5 * 1024 * 1024
JS_SAFE = "-_.!~*'()"  # what encodeURIComponent leaves as is
PUT_HEADERS = {
    "x-vercel-blob-access": "private",
    "x-content-type": "application/octet-stream",
    "x-add-random-suffix": "0",
    "x-allow-overwrite": "1",
}


@dataclass
class Seen:
    """One request as received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    size: int


@dataclass
class Upload:
    pathname: str
    key: str
    parts: dict[int, bytes] = field(default_factory=dict)


class VercelBlobServer:
    """One in-memory store behind a threaded HTTP server."""

    def __init__(self) -> None:
        self.blobs: dict[str, tuple[bytes, str]] = {}  # pathname -> (data, uploadedAt)
        self.uploads: dict[str, Upload] = {}
        self.requests: list[Seen] = []
        self.problems: list[str] = []
        self.failures: list[int] = []  # statuses to answer the next API calls with
        self.failing: dict[str, int] = {}  # kind of call -> status it is always answered
        self.lock = threading.Lock()
        self.page_size = 1000
        handler = type("Handler", (_Handler,), {"store": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def api_url(self) -> str:
        return self.url + API

    def blob_url(self, pathname: str) -> str:
        # Vercel's are https://<store>.private.blob.vercel-storage.com/<pathname>
        return f"{self.url}/{STORE}.private/{quote(pathname)}"

    def reset(self) -> None:
        with self.lock:
            self.blobs.clear()
            self.uploads.clear()
            self.requests.clear()
            self.problems.clear()
            self.failures.clear()
            self.failing.clear()
            self.page_size = 1000

    def fail_next(self, *statuses: int) -> None:
        """Answer the next API calls with these statuses (a 5xx body is not JSON)."""
        with self.lock:
            self.failures.extend(statuses)

    def fail_always(self, kind: str, status: int) -> None:
        """Answer every call of a kind (see `kind_of`) with this status from now on."""
        with self.lock:
            self.failing[kind] = status

    def calls(self, kind: str | None = None) -> list[Seen]:
        """Return the requests seen, all or of one kind (see `kind_of`)."""
        return [s for s in self.requests if kind is None or kind_of(s) == kind]

    def destination_yaml(self, prefix: str = "", *, token: str | None = TOKEN, **extra) -> str:
        """Return a flow-style `vercel_blob` destination for monitor.yaml."""
        items = {"type": "vercel_blob", "prefix": prefix, "api_url": self.api_url}
        if token is not None:
            items["token"] = token
        items.update({k: str(v) for k, v in extra.items()})
        return "{" + ", ".join(f'{k}: "{v}"' for k, v in items.items()) + "}"


def kind_of(seen: Seen) -> str:
    """Name a request: put, mpu-create, mpu-upload, mpu-complete, delete, head, list, download."""
    if not seen.path.startswith(API):
        return "download"
    if seen.path == API + "/mpu":
        return "mpu-" + seen.headers.get("x-mpu-action", "")
    if seen.path == API + "/delete":
        return "delete"
    if seen.method == "PUT":
        return "put"
    return "head" if "url" in seen.query else "list"


class _Handler(BaseHTTPRequestHandler):
    store: VercelBlobServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    # -- plumbing ---------------------------------------------------------------------------

    def _answer(self, status: int, body: object | bytes, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str = "") -> None:
        self._answer(status, {"error": {"code": code, "message": message or code}})

    def _refuse(self, problem: str) -> None:
        """An unexpected request: recorded for the test to fail on, answered 400."""
        with self.store.lock:
            self.store.problems.append(f"{self.command} {self.path}: {problem}")
        self._error(400, "bad_request", problem)

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            # our client sends whole parts with a length; a stream would be a change
            self._pending = "chunked body"
            return b""
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        self._pending: str | None = None
        split = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        body = self._body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        seen = Seen(self.command, split.path, query, headers, len(body))
        with self.store.lock:
            self.store.requests.append(seen)
        if self._pending:
            return self._refuse(self._pending)
        if split.path.startswith(f"/{STORE}.private/"):
            return self._download(unquote(split.path[len(f"/{STORE}.private/") :]), query)
        if not split.path.startswith(API):
            return self._refuse("not an API path")
        problem = self._check_api_headers(headers)
        if problem == "forbidden":
            return self._error(403, "forbidden")
        if problem:
            return self._refuse(problem)
        with self.store.lock:
            failure = self.store.failures.pop(0) if self.store.failures else None
            failure = self.store.failing.get(kind_of(seen), failure)
        if failure is not None:
            # what a proxy in front of the service answers: plain text, no error code
            return self._answer(failure, b"upstream unavailable", "text/plain")
        route = (self.command, split.path[len(API) :])
        if route == ("PUT", "/"):
            return self._put(query, headers, body)
        if route == ("POST", "/mpu"):
            return self._mpu(query, headers, body)
        if route == ("POST", "/delete"):
            return self._delete(headers, body)
        if route == ("GET", ""):
            return self._head(query) if "url" in query else self._list(query)
        return self._refuse("unknown route")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    # -- checks -----------------------------------------------------------------------------

    def _check_api_headers(self, headers: dict[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return "no bearer authorization"
        if auth != f"Bearer {TOKEN}":
            return "forbidden"
        if headers.get("x-api-version") != API_VERSION:
            return f"x-api-version {headers.get('x-api-version')!r}, expected {API_VERSION}"
        if headers.get("x-vercel-blob-store-id") != STORE:
            return f"x-vercel-blob-store-id {headers.get('x-vercel-blob-store-id')!r}"
        if not headers.get("x-api-blob-request-attempt", "").isdigit():
            return "no x-api-blob-request-attempt"
        return None

    def _check_put_headers(self, headers: dict[str, str]) -> str | None:
        for name, value in PUT_HEADERS.items():
            if headers.get(name) != value:
                return f"{name} {headers.get(name)!r}, expected {value!r}"
        return None

    def _pathname(self, query: dict[str, str]) -> str | None:
        pathname = query.get("pathname", "")
        if not pathname or pathname.startswith("/") or "//" in pathname or len(pathname) > 950:
            return None
        return pathname

    def _meta(self, pathname: str) -> dict:
        data, uploaded = self.store.blobs[pathname]
        url = self.store.blob_url(pathname)
        return {
            "url": url,
            "downloadUrl": url + "?download=1",
            "pathname": pathname,
            "size": len(data),
            "uploadedAt": uploaded,
            "etag": f'"{hash(data) & 0xFFFFFFFF:08x}"',
        }

    def _store(self, pathname: str, data: bytes) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self.store.lock:
            self.store.blobs[pathname] = (data, stamp)

    def _stored_answer(self, pathname: str) -> dict:
        meta = self._meta(pathname)
        return {
            "url": meta["url"],
            "downloadUrl": meta["downloadUrl"],
            "pathname": pathname,
            "contentType": "application/octet-stream",
            "contentDisposition": f'attachment; filename="{pathname.rsplit("/", 1)[-1]}"',
            "etag": meta["etag"],
        }

    # -- routes -----------------------------------------------------------------------------

    def _put(self, query, headers, body) -> None:
        pathname = self._pathname(query)
        if pathname is None or set(query) != {"pathname"}:
            return self._refuse(f"put query {query!r}")
        if problem := self._check_put_headers(headers):
            return self._refuse(problem)
        self._store(pathname, body)
        self._answer(200, self._stored_answer(pathname))

    def _mpu(self, query, headers, body) -> None:
        pathname = self._pathname(query)
        if pathname is None or set(query) != {"pathname"}:
            return self._refuse(f"mpu query {query!r}")
        if problem := self._check_put_headers(headers):
            return self._refuse(problem)
        action = headers.get("x-mpu-action")
        if action == "create":
            if body:
                return self._refuse("mpu create with a body")
            upload_id = secrets.token_hex(12)
            # a key with a '/' and a space: the client must encode it as encodeURIComponent
            key = f"{STORE}/mpu {upload_id}/{pathname}"
            with self.store.lock:
                self.store.uploads[upload_id] = Upload(pathname, key)
            return self._answer(200, {"uploadId": upload_id, "key": key})
        upload = self.store.uploads.get(headers.get("x-mpu-upload-id", ""))
        if upload is None or upload.pathname != pathname:
            return self._refuse("unknown x-mpu-upload-id")
        if headers.get("x-mpu-key") != quote(upload.key, safe=JS_SAFE):
            return self._refuse(f"x-mpu-key {headers.get('x-mpu-key')!r}")
        if action == "upload":
            number = headers.get("x-mpu-part-number", "")
            if not number.isdigit() or not 1 <= int(number) <= 10000:
                return self._refuse(f"x-mpu-part-number {number!r}")
            if not body:
                return self._refuse("empty part")
            with self.store.lock:
                upload.parts[int(number)] = body
            return self._answer(200, {"etag": f'"part-{number}-{len(body)}"'})
        if action == "complete":
            if headers.get("content-type") != "application/json":
                return self._refuse("complete without content-type application/json")
            try:
                parts = json.loads(body)
                numbers = [p["partNumber"] for p in parts]
                etags = [p["etag"] for p in parts]
            except (ValueError, TypeError, KeyError):
                return self._refuse("complete body is not [{etag, partNumber}]")
            if numbers != list(range(1, len(upload.parts) + 1)):
                return self._refuse(f"complete parts {numbers}, uploaded {sorted(upload.parts)}")
            for number, etag in zip(numbers, etags, strict=True):
                if etag != f'"part-{number}-{len(upload.parts[number])}"':
                    return self._refuse(f"etag of part {number}: {etag!r}")
            sizes = [len(upload.parts[n]) for n in numbers]
            if any(size < MIN_PART for size in sizes[:-1]):
                return self._refuse(f"a part other than the last is under 5 MB: {sizes}")
            self._store(pathname, b"".join(upload.parts[n] for n in numbers))
            with self.store.lock:
                del self.store.uploads[headers["x-mpu-upload-id"]]
            return self._answer(200, self._stored_answer(pathname))
        return self._refuse(f"x-mpu-action {action!r}")

    def _delete(self, headers, body) -> None:
        if headers.get("content-type") != "application/json":
            return self._refuse("delete without content-type application/json")
        try:
            urls = json.loads(body)["urls"]
        except (ValueError, TypeError, KeyError):
            urls = None
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            return self._refuse('delete body is not {"urls": [...]}')
        with self.store.lock:
            for url in urls:
                prefix = self.store.blob_url("")
                pathname = unquote(url[len(prefix) :]) if url.startswith(prefix) else url
                self.store.blobs.pop(pathname, None)  # unknown ones are ignored
        self._answer(200, {})

    def _head(self, query) -> None:
        if set(query) != {"url"}:
            return self._refuse(f"head query {query!r}")
        pathname = query["url"]
        if pathname not in self.store.blobs:
            return self._error(404, "not_found", "The requested blob does not exist")
        meta = self._meta(pathname)
        meta.update(
            contentType="application/octet-stream",
            contentDisposition="attachment",
            cacheControl="public, max-age=2592000",
        )
        self._answer(200, meta)

    def _list(self, query) -> None:
        if set(query) - {"prefix", "cursor", "limit", "mode"}:
            return self._refuse(f"list query {query!r}")
        if "mode" in query and query["mode"] != "expanded":
            return self._refuse("folded listing")
        limit = int(query.get("limit", "1000"))
        if not 1 <= limit <= 1000:
            return self._refuse(f"limit {limit}")
        limit = min(limit, self.store.page_size)
        prefix = query.get("prefix", "")
        with self.store.lock:
            names = sorted(p for p in self.store.blobs if p.startswith(prefix))
        start = int(query["cursor"]) if query.get("cursor") else 0
        page = names[start : start + limit]
        more = start + limit < len(names)
        answer: dict = {"blobs": [self._meta(p) for p in page], "hasMore": more}
        if more:
            answer["cursor"] = str(start + limit)
        self._answer(200, answer)

    def _download(self, pathname: str, query) -> None:
        # a private blob is served only with the store's token (get.ts sends it as bearer)
        if self.headers.get("authorization") != f"Bearer {TOKEN}":
            return self._answer(403, b"Forbidden", "text/plain")
        if set(query) - {"cache", "download"}:
            return self._refuse(f"download query {query!r}")
        blob = self.store.blobs.get(pathname)
        if blob is None:
            return self._answer(404, b"Not Found", "text/plain")
        self._answer(200, blob[0], "application/octet-stream")


@pytest.fixture(scope="session")
def _blob_server():
    server = VercelBlobServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def blob_server(_blob_server):
    """The stand-in, emptied for each test; a request it did not expect fails the test."""
    _blob_server.reset()
    yield _blob_server
    assert not _blob_server.problems, "unexpected requests:\n" + "\n".join(_blob_server.problems)
