"""JSON in and out: secrets masked on the way out, bounded bodies on the way in."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from watchkeeper.engine.redaction import REDACTOR

MAX_BODY = 1024 * 1024


class BodyError(Exception):
    """A request body the API cannot take; carries the status and message to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Answer with JSON, every registered secret masked."""
    body = json.dumps(REDACTOR.redact_obj(data), default=str, allow_nan=False)
    return Response(body, status, headers=headers, media_type="application/json")


def error(status: int, message: str, **extra: Any) -> Response:
    """Answer with `{"error": message}`."""
    return json_response({"error": message, **extra}, status)


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """Return the request body; BodyError(413) past `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"request body larger than {limit} bytes")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise BodyError(413, f"request body larger than {limit} bytes")
    return bytes(chunks)


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    """Return the body as a JSON object; BodyError(400/422) when it is not one."""
    raw = await read_body(request)
    if not raw.strip():
        if required:
            raise BodyError(400, "a JSON object body is required")
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BodyError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BodyError(422, "the body must be a JSON object")
    return data


def optional_text(data: dict[str, Any], key: str, limit: int = 2000) -> str | None:
    """Return a string field of a body (None when absent); BodyError(422) when not a string."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BodyError(422, f"`{key}` must be a string")
    return value.strip()[:limit] or None
