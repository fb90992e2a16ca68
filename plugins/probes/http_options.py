"""The `http` probe's options model: what monitor.yaml may say about an http check.

Apart from the probe (http.py) so that a probe worker, which gets each check's options as
plain values, runs http checks without importing pydantic or the config's models; the
probe's `Options` names this model and imports it when read.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from watchkeeper.schema.base import ConfigModel, Secret
from watchkeeper.schema.checks import Extraction, ProbeOptions
from watchkeeper.schema.units import Size


class HttpExpect(ConfigModel):
    """What a good response looks like; every given key must hold."""

    status: int | list[int] | None = Field(
        None, description="Accepted status code(s); default any 2xx or 3xx."
    )
    json_: Any = Field(
        None,
        alias="json",
        description="A JSON subset the body must contain "
        "(objects match key by key, lists element by element).",
    )
    body_regex: str | None = Field(None, description="A regular expression the body must match.")
    body_contains: str | None = Field(None, description="Text the body must contain.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Response headers that "
        "must be present with these values (case-insensitive "
        "names), e.g. the security headers X-Frame-Options: DENY.",
    )

    @model_validator(mode="after")
    def _valid_regex(self) -> HttpExpect:
        if self.body_regex is not None:
            try:
                re.compile(self.body_regex)
            except re.error as exc:
                raise ValueError(f"body_regex is not a valid regular expression: {exc}") from None
        return self


class BasicAuth(ConfigModel):
    """HTTP basic authentication."""

    username: str = Field(description="User name.")
    password: Secret = Field(description="Password.")


class HttpOptions(ProbeOptions):
    """Request a URL and check status, body, headers, timing and certificate."""

    url: str = Field(description="URL to request; may use ${env.base_url}.")
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = Field(
        "GET", description="HTTP method."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Request headers.")
    body: str | None = Field(None, description="Request body text.")
    json_body: Any = Field(None, description="Request body sent as JSON.")
    auth: BasicAuth | None = Field(None, description="HTTP basic authentication.")
    follow_redirects: bool = Field(True, description="Follow redirects.")
    max_redirects: int = Field(10, ge=0, description="Most redirects followed.")
    verify: bool = Field(True, description="Verify the server's TLS certificate.")
    ca_bundle: str | None = Field(None, description="PEM file of CA certificates to trust.")
    client_cert: str | None = Field(None, description="PEM client certificate (mutual TLS).")
    client_key: str | None = Field(None, description="PEM key of the client certificate.")
    proxy: Secret | None = Field(None, description="Proxy URL (may hold credentials).")
    max_body: Size = Field(1_048_576, description="Read at most this much of the body.")
    reuse_connections: bool = Field(
        False,
        description="Keep connections open between runs and send over them, for frequent "
        "checks of one host: no connect or TLS handshake in `response_time`, and "
        "`certificate_expiry` read from the kept connection.",
    )
    expect: HttpExpect = Field(
        default_factory=HttpExpect, description="What a good response looks like."
    )
    extract: dict[str, Extraction] = Field(
        default_factory=dict, description="Metrics read from the JSON body, with their unit."
    )

    @model_validator(mode="after")
    def _consistent(self) -> HttpOptions:
        if self.body is not None and self.json_body is not None:
            raise ValueError("give either `body` or `json_body`, not both")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("`client_key` needs `client_cert`")
        return self
