"""JSON in and out: secrets masked on the way out, bounded bodies on the way in."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from watchkeeper.engine.observe.redaction import REDACTOR

MAX_BODY = 1024 * 1024
MAX_DEPTH = 64
"""How deeply arrays and objects in a request body may nest."""


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


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _number(text: str) -> int | float:
    # past 20 digits an integer is read as a float (inf when huge), which every numeric
    # field then refuses as not finite: no int of thousands of digits goes further
    return int(text) if len(text) <= 20 else float(text)


def parse_json(raw: bytes) -> Any:
    """Parse a request body as strict JSON (UTF-8, no NaN or Infinity, nested at most
    `MAX_DEPTH` deep); BodyError(400) otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, "the body is not UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_not_json, parse_int=_number)
    except RecursionError:
        raise BodyError(400, f"the body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise BodyError(400, "the body is not valid JSON") from None
    if _depth(data) > MAX_DEPTH:
        raise BodyError(400, f"the body nests deeper than {MAX_DEPTH} levels")
    return data


def _depth(data: Any) -> int:
    """Return how deeply a parsed document nests (iteratively: no recursion to exhaust)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH:
            stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return deepest


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    """Return the body as a JSON object; BodyError(400/422) when it is not one."""
    raw = await read_body(request)
    if not raw.strip():
        if required:
            raise BodyError(400, "a JSON object body is required")
        return {}
    data = parse_json(raw)
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
