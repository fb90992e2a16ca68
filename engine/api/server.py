"""Serve the API with hypercorn inside the daemon's task group.

The server binds before it reports itself started, so an address already in use is a
clear start-up error (`ServerError`) rather than a traceback later; it installs no signal
handlers of its own and shuts down when the daemon's `stopping` event is set.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config
from hypercorn.utils import wrap_app

from watchkeeper.engine.api.app import create_app

log = logging.getLogger("watchkeeper.api")

GRACEFUL_TIMEOUT = 3.0


class ServerError(Exception):
    """The HTTP server cannot start: the address is taken, or not one of this host's."""


def hypercorn_config(listen: str) -> Config:
    """Return hypercorn's settings for `server.listen`; hypercorn's own access log is off."""
    config = Config()
    config.bind = [listen]
    config.accesslog = None  # ours (app.Guard) leaves query strings, and tokens, out
    config.errorlog = logging.getLogger("watchkeeper.api.server")
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.include_server_header = False
    return config


def _url(sockname: Any) -> str:
    host, port = sockname[0], sockname[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class HttpServer:
    """A bound server waiting to serve (sockets open, nothing accepted yet)."""

    def __init__(self, daemon: Any, config: Config | None, sockets: Any):
        self.daemon = daemon
        self.config = config
        self.sockets = sockets
        self.app = create_app(daemon) if config is not None else None
        self.done = anyio.Event()  # set once serving ended (connections closed gracefully)

    @property
    def address(self) -> tuple[str, int] | None:
        """Return the bound (host, port), or None when the server is off."""
        if self.sockets is None:
            return None
        return self.sockets.insecure_sockets[0].getsockname()[:2]

    async def serve(self, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until the daemon's `stopping` is set; started() passes the address."""
        if self.app is None:
            self.done.set()
            task_status.started(None)
            return
        self.app.state.metrics.attach()
        try:
            log.info("HTTP server listening", extra={"url": _url(self.address)})
            task_status.started(self.address)
            await worker_serve(
                wrap_app(self.app, self.config.wsgi_max_body_size, "asgi"),
                self.config,
                sockets=self.sockets,
                shutdown_trigger=self.daemon.stopping.wait,
            )
        finally:
            self.app.state.metrics.detach()
            self.close()
            self.done.set()

    def close(self) -> None:
        """Release the sockets (serve() does this itself when it ends)."""
        if self.sockets is not None:
            for sock in self.sockets.insecure_sockets:
                sock.close()


def bind_http(daemon: Any) -> HttpServer:
    """Bind `server.listen` now; raise ServerError, logged, when that is impossible.

    Call it before the daemon's task group, so that an address in use stops the start-up
    with a plain error (exit 1), then run `HttpServer.serve` in the task group.
    """
    settings = daemon.config.server
    if not settings.enabled:
        log.info("HTTP server off (server.enabled: false)")
        return HttpServer(daemon, None, None)
    config = hypercorn_config(settings.listen)
    try:
        sockets = config.create_sockets()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        message = f"cannot listen on {settings.listen} (server.listen): {reason}"
        log.error(message)
        raise ServerError(message) from None
    return HttpServer(daemon, config, sockets)


async def serve_http(daemon: Any, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
    """Bind and serve `server.listen` until the daemon stops; started() passes the address.

    Raise ServerError (before started) when the address cannot be bound.
    """
    await bind_http(daemon).serve(task_status=task_status)
