"""The daemon's HTTP API, status page and Prometheus metrics (see docs/api.md)."""

from __future__ import annotations

from watchkeeper.engine.api.app import create_app
from watchkeeper.engine.api.server import HttpServer, ServerError, bind_http, serve_http

__all__ = ["HttpServer", "ServerError", "bind_http", "create_app", "serve_http"]
