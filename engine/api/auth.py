"""Who may call what: Bearer tokens compared in constant time, and who to name in the audit."""

from __future__ import annotations

import hmac
from typing import Any

from pydantic import SecretStr
from starlette.requests import Request


def secret_value(value: Any) -> str:
    """Return the plain text of a secret setting ('' when unset)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return (value or "").strip() if isinstance(value, str) else ""


def same(given: str | None, expected: str) -> bool:
    """Compare a presented token with the expected one in constant time; '' never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer(request: Request) -> str | None:
    """Return the token of an `Authorization: Bearer ...` header, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def presented(request: Request, *, query: bool = False) -> str | None:
    """Return the token a request carries: its Bearer header, or `?token=` where allowed."""
    token = bearer(request)
    if token is None and query:
        token = request.query_params.get("token") or None
    return token


def admin_token(daemon: Any) -> str:
    """Return the configured admin token ('' = the admin API is closed)."""
    return secret_value(daemon.config.server.admin_token)


def is_admin(request: Request, daemon: Any, *, query: bool = False) -> bool:
    """True when the request presents the admin token (never when none is configured)."""
    return same(presented(request, query=query), admin_token(daemon))


def client(request: Request) -> str:
    """Return the caller's address as the server saw it."""
    return request.client.host if request.client else "unknown"


def who(request: Request, by: Any = None) -> str:
    """Name the caller for the audit log: the body's `by`, else `token@address`."""
    if isinstance(by, str) and by.strip():
        return f"{by.strip()[:200]} (token@{client(request)})"
    return f"token@{client(request)}"
