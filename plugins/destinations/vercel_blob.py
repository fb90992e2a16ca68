"""The `vercel_blob` backup destination: a Vercel Blob store, over its REST API with httpx.

The calls are those of Vercel's own SDK, @vercel/blob 2.6.1, read in github.com/vercel/storage
at commit 5c2d8bffcb6b3ab87f48277be532d08c9a07bbd2 (packages/blob/src):

- every API call (api.ts `requestApi`): `authorization: Bearer <token>`, `x-api-version: 12`,
  `x-vercel-blob-store-id` (the store id inside the token, helpers.ts
  `parseStoreIdFromReadWriteToken`), `x-api-blob-request-attempt`; base URL
  `https://vercel.com/api/blob` (helpers.ts `getApiUrl`);
- put (put.ts): `PUT /?pathname=P` with `x-vercel-blob-access`, `x-content-type`,
  `x-add-random-suffix`, `x-allow-overwrite` (put-helpers.ts `createPutHeaders`); answers
  `{url, downloadUrl, pathname, contentType, contentDisposition, etag}`;
- multipart (multipart/create.ts, upload.ts, complete.ts): `POST /mpu?pathname=P` with
  `x-mpu-action: create` -> `{uploadId, key}`; `upload` with `x-mpu-key` (encodeURIComponent),
  `x-mpu-upload-id`, `x-mpu-part-number` and the part as body -> `{etag}`; `complete` with
  a JSON body `[{etag, partNumber}]`. Parts are at least 5 MB; there is no abort call;
- list (list.ts): `GET ?prefix=&cursor=&limit=` -> `{blobs: [{pathname, url, ...}], cursor,
  hasMore}`; head (head.ts): `GET ?url=P` -> the blob's metadata, 404 `not_found`;
- delete (del.ts): `POST /delete` with `{"urls": [...]}` (URLs or pathnames);
- download (get.ts): `GET <blob url>` with the bearer token, `?cache=0` for private blobs to
  read the origin rather than a CDN copy; the token goes only to `*.blob.vercel-storage.com`.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

import anyio
from pydantic import Field, field_validator

from watchkeeper.engine.backups.manifest import check_key
from watchkeeper.engine.backups.plugin import BackupDestination, BackupError
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import REDACTOR, secret_value
from watchkeeper.schema.backups import DestinationOptions

if TYPE_CHECKING:  # imported where a request is made: validate does not pay for it
    import httpx
from watchkeeper.schema.base import Secret
from watchkeeper.schema.units import Size

API_URL = "https://vercel.com/api/blob"
API_VERSION = "12"  # api.ts BLOB_API_VERSION: the server shapes its answers by it
TOKEN_VARIABLE = "BLOB_READ_WRITE_TOKEN"
BLOB_HOST_SUFFIX = ".blob.vercel-storage.com"
MIN_PART = 5 * 1024 * 1024  # Vercel Blob's smallest multipart part
LIST_LIMIT = 1000
DELETE_BATCH = 100
READ_CHUNK = 1 << 20
# encodeURIComponent leaves these unescaped; x-mpu-key must be encoded the same way
URI_COMPONENT_SAFE = "-_.!~*'()"


class VercelBlobOptions(DestinationOptions):
    """Write backups to a Vercel Blob store (private by default)."""

    token: Secret | None = Field(
        None,
        description="The store's read-write token (default: the BLOB_READ_WRITE_TOKEN "
        "environment variable).",
    )
    prefix: str = Field("", description="Pathname prefix, e.g. infinite-idea/.")
    access: Literal["private", "public"] = Field(
        "private",
        description="The store's access: private (reads need the token) or public; must "
        "match how the store was created.",
    )
    api_url: str = Field(
        API_URL, description="Blob API base URL (change only for a proxy or a test server)."
    )
    part_size: Size = Field(
        8 * 1024 * 1024,
        description="Size of one part of a multipart upload (at least 5MiB, Vercel Blob's "
        "minimum); files larger than this are uploaded in parts.",
    )
    upload_concurrency: int = Field(
        4,
        ge=1,
        le=16,
        description="Parts uploaded at once; memory used is about part_size times this.",
    )
    retries: int = Field(
        5,
        ge=0,
        le=20,
        description="Retries of a request that failed with a 5xx or 429 answer or a network "
        "error (exponential backoff from 0.25 s).",
    )

    @field_validator("part_size")
    @classmethod
    def _vercel_minimum(cls, value: int) -> int:
        if value < MIN_PART:
            raise ValueError(
                f"expected at least 5MiB ({MIN_PART} bytes), Vercel Blob's smallest part"
            )
        return value

    @field_validator("prefix")
    @classmethod
    def _pathname_prefix(cls, value: str) -> str:
        # the service refuses `//` in a pathname (helpers.ts disallowedPathnameCharacters)
        if value.startswith("/") or "//" in value:
            raise ValueError("expected a prefix without a leading '/' and without '//'")
        return value


def store_id(token: str) -> str:
    """Return the store id inside a read-write token (`vercel_blob_rw_<store>_<secret>`)."""
    parts = token.split("_")
    return parts[3] if len(parts) > 3 else ""


def _backoff(attempt: int) -> float:
    return min(0.25 * 2**attempt, 8.0)


class BlobApiError(BackupError):
    """An error answer of the Blob API; `status` is its HTTP status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def _api_error(response: httpx.Response, what: str) -> BlobApiError:
    """Return the operator's message for an error answer (api.ts `getBlobError` codes)."""
    code, message = "", ""
    try:
        body = response.json()
        error = body.get("error") or {}
        code = str(error.get("code") or "")
        message = str(error.get("message") or "")
    except (ValueError, AttributeError):
        pass
    status = response.status_code
    if code == "store_not_found":
        hint = "the Blob store does not exist: check the destination's token"
    elif code == "store_suspended":
        hint = "the Blob store is suspended"
    elif code == "forbidden" or status in (401, 403):
        hint = "access denied: check the destination's token (BLOB_READ_WRITE_TOKEN)"
    elif code == "rate_limited":
        hint = "rate limited by Vercel Blob"
    else:
        hint = message[:200] or code or response.reason_phrase or "error"
    label = f"HTTP {status}" + (f" {code}" if code else "")
    return BlobApiError(f"vercel blob {what}: {hint} ({label})", status)


def _single(group: BaseExceptionGroup) -> BaseException | None:
    """Return the one real exception of a task group's failure, cancellations aside."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        elif not isinstance(exc, anyio.get_cancelled_exc_class()):
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else None


class VercelBlobDestination(BackupDestination):
    type = "vercel_blob"
    Options = VercelBlobOptions
    _http: httpx.AsyncClient | None = None

    def describe(self) -> str:
        where = f"vercel blob /{self.options.prefix}"
        api = self.options.api_url
        return where if api == API_URL else f"{where} at {api}"

    # -- requests -----------------------------------------------------------------------------

    @property
    def http(self) -> httpx.AsyncClient:
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(120.0, connect=15.0), follow_redirects=False
            )
        return self._http

    def _token(self) -> str:
        token = secret_value(self.options.token) or os.environ.get(TOKEN_VARIABLE, "").strip()
        if not token:
            raise BackupError(
                f"vercel blob: no token: set {TOKEN_VARIABLE} or the destination's `token`"
            )
        # read from the environment, it is not in the config: mask it in every message
        REDACTOR.add(token)
        return token

    def _auth(self) -> dict[str, str]:
        token = self._token()
        headers = {"authorization": f"Bearer {token}", "x-api-version": API_VERSION}
        if store := store_id(token):
            headers["x-vercel-blob-store-id"] = store
        return headers

    async def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> Any:
        """Call the Blob API and return its JSON answer, retrying what may pass next time.

        Bodies are whole bytes (one part at most), so a retry resends them as they were.
        As in the SDK, an answer saying the request itself is wrong (4xx) is not retried.
        """
        import httpx

        url = self.options.api_url.rstrip("/") + path
        auth = self._auth()
        error: BackupError | None = None
        for attempt in range(self.options.retries + 1):
            if attempt:
                await anyio.sleep(_backoff(attempt - 1))
            sent = {**auth, "x-api-blob-request-attempt": str(attempt), **(headers or {})}
            try:
                response = await self.http.request(
                    method, url, params=params, headers=sent, content=content
                )
            except httpx.TransportError as exc:
                error = BackupError(f"vercel blob {what}: {type(exc).__name__}: {exc}")
                continue
            if response.is_success:
                try:
                    return response.json()
                except ValueError:
                    raise BackupError(f"vercel blob {what}: the answer is not JSON") from None
            error = _api_error(response, what)
            if response.status_code < 500 and response.status_code != 429:
                raise error
        assert error is not None
        if self.options.retries:
            error.args = (f"{error} after {self.options.retries + 1} attempts",)
        raise error

    def _pathname(self, key: str) -> str:
        return self.options.prefix + check_key(key)

    def _put_headers(self) -> dict[str, str]:
        return {
            "x-vercel-blob-access": self.options.access,
            # backups are opaque bytes: a type hinting at compression (.tar.gz) could invite
            # a transparent decode on the way back
            "x-content-type": "application/octet-stream",
            # the key is the backup's own name, never a random one
            "x-add-random-suffix": "0",
            # a retried PUT whose first attempt did land would otherwise be refused, and
            # local and s3 overwrite too
            "x-allow-overwrite": "1",
        }

    def _check_stored(self, answer: Any, pathname: str) -> None:
        if not isinstance(answer, dict) or answer.get("pathname") != pathname:
            stored = answer.get("pathname") if isinstance(answer, dict) else None
            raise BackupError(f"vercel blob put: stored as {stored!r}, expected {pathname!r}")

    # -- the destination contract -------------------------------------------------------------

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        pathname = self._pathname(key)
        part_size = int(self.options.part_size)
        stream = aiter(chunks)
        first = bytearray()
        # a file smaller than one part goes up in one PUT; larger ones part by part, so
        # memory holds at most a few parts whatever the size
        async for chunk in stream:
            first += chunk
            if len(first) >= part_size:
                break
        else:
            answer = await self._request(
                "PUT", "/", "put", params={"pathname": pathname},
                headers=self._put_headers(), content=bytes(first),
            )  # fmt: skip
            self._check_stored(answer, pathname)
            return
        try:
            await self._multipart(pathname, first, stream)
        except BaseExceptionGroup as group:
            leaf = _single(group)
            if leaf is None:
                raise
            raise leaf from None

    async def _multipart(
        self, pathname: str, buffer: bytearray, rest: AsyncIterator[bytes]
    ) -> None:
        # an upload never completed is no blob: nothing appears under the pathname, and
        # the service has no abort call to make
        part_size = int(self.options.part_size)
        params = {"pathname": pathname}
        base = self._put_headers()
        created = await self._request(
            "POST", "/mpu", "multipart create", params=params,
            headers={**base, "x-mpu-action": "create"},
        )  # fmt: skip
        try:
            upload_id, mpu_key = str(created["uploadId"]), str(created["key"])
        except (KeyError, TypeError):
            raise BackupError("vercel blob multipart create: no uploadId/key") from None
        part_headers = {
            **base,
            "x-mpu-action": "upload",
            "x-mpu-key": quote(mpu_key, safe=URI_COMPONENT_SAFE),
            "x-mpu-upload-id": upload_id,
        }
        parts: list[dict[str, Any]] = []
        send, receive = anyio.create_memory_object_stream[tuple[int, bytes]](0)

        async def upload(queue) -> None:
            async with queue:
                async for number, data in queue:
                    answer = await self._request(
                        "POST", "/mpu", f"multipart part {number}", params=params,
                        headers={**part_headers, "x-mpu-part-number": str(number)},
                        content=data,
                    )  # fmt: skip
                    if not isinstance(answer, dict) or not answer.get("etag"):
                        raise BackupError(f"vercel blob multipart part {number}: no etag")
                    parts.append({"etag": answer["etag"], "partNumber": number})

        async with anyio.create_task_group() as tg:
            for _ in range(self.options.upload_concurrency):
                tg.start_soon(upload, receive.clone())
            receive.close()
            async with send:
                number = 1
                # every part but the last is exactly part_size (R2 underneath insists)
                while True:
                    while len(buffer) >= part_size:
                        await send.send((number, bytes(buffer[:part_size])))
                        del buffer[:part_size]
                        number += 1
                    chunk = await anext(rest, None)
                    if chunk is None:
                        break
                    buffer += chunk
                if buffer:
                    await send.send((number, bytes(buffer)))
        parts.sort(key=lambda p: p["partNumber"])
        answer = await self._request(
            "POST", "/mpu", "multipart complete", params=params,
            headers={
                **base,
                "content-type": "application/json",
                "x-mpu-action": "complete",
                "x-mpu-upload-id": upload_id,
                "x-mpu-key": quote(mpu_key, safe=URI_COMPONENT_SAFE),
            },
            content=json.dumps(parts).encode(),
        )  # fmt: skip
        self._check_stored(answer, pathname)

    async def _blob_url(self, key: str) -> str:
        pathname = self._pathname(key)
        try:
            meta = await self._request("GET", "", "head", params={"url": pathname})
        except BlobApiError as exc:
            if exc.status == 404:
                raise FileNotFoundError(f"{key}: no such blob") from None
            raise
        url = meta.get("url") if isinstance(meta, dict) else None
        if not isinstance(url, str):
            raise BackupError(f"vercel blob head: no url for {pathname!r}")
        # the bearer token may go to Vercel's blob hosts and to the API's own host (a proxy
        # or a test server), never to wherever an answer points
        target, api = urlsplit(url), urlsplit(self.options.api_url)
        vercel = target.scheme == "https" and (target.hostname or "").endswith(BLOB_HOST_SUFFIX)
        if not vercel and (target.scheme, target.netloc) != (api.scheme, api.netloc):
            raise BackupError(f"vercel blob: refusing to send the token to {target.netloc}")
        return url

    async def get(self, key: str) -> AsyncIterator[bytes]:
        import httpx

        url = await self._blob_url(key)
        params = {"cache": "0"} if self.options.access == "private" else None
        headers = {**self._auth(), "accept-encoding": "identity"}
        started = False
        for attempt in range(self.options.retries + 1):
            if attempt:
                await anyio.sleep(_backoff(attempt - 1))
            try:
                async with self.http.stream("GET", url, params=params, headers=headers) as r:
                    if r.status_code == 404:
                        raise FileNotFoundError(f"{key}: no such blob")
                    if r.status_code >= 500 and attempt < self.options.retries:
                        continue
                    if not r.is_success:
                        await r.aread()
                        raise _api_error(r, "download")
                    async for chunk in r.aiter_bytes(READ_CHUNK):
                        started = True
                        yield chunk
                    return
            except httpx.TransportError as exc:
                # only a failure before the first byte is retried: the reader already holds
                # the start of the file and cannot be handed it again
                if started or attempt >= self.options.retries:
                    raise BackupError(
                        f"vercel blob download: {type(exc).__name__}: {exc}"
                    ) from None

    async def list(self, prefix: str = "") -> list[str]:
        own = self.options.prefix
        found: list[str] = []
        cursor: str | None = None
        while True:
            params = {"limit": str(LIST_LIMIT)}
            if own + prefix:
                params["prefix"] = own + prefix
            if cursor:
                params["cursor"] = cursor
            page = await self._request("GET", "", "list", params=params)
            for blob in page.get("blobs") or []:
                pathname = blob.get("pathname", "")
                if pathname.startswith(own):
                    found.append(pathname[len(own) :])
            cursor = page.get("cursor")
            if not page.get("hasMore") or not cursor:
                break
        return sorted(k for k in found if k.startswith(prefix))

    async def delete(self, keys: list[str]) -> None:
        pathnames = [self._pathname(k) for k in keys]
        for start in range(0, len(pathnames), DELETE_BATCH):
            batch = pathnames[start : start + DELETE_BATCH]
            await self._request(
                "POST", "/delete", "delete",
                headers={"content-type": "application/json"},
                content=json.dumps({"urls": batch}).encode(),
            )  # fmt: skip

    async def close(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()


@hookimpl
def watchkeeper_backup_destinations():
    return [VercelBlobDestination]
