"""The errors of the http probe's own path (http_plain_hop.py): httpx's, by name and
place in the hierarchy, without importing httpx (~8 MB in a worker, and the first failed
check would pay the import inside its timeout).

`is_a` tells an error by its httpx name, whichever path raised it, so a message or a
detail reads the same from both.
"""

from __future__ import annotations


class HTTPError(Exception):
    """Base of the errors, as httpx.HTTPError."""


class RequestError(HTTPError):
    pass


class TransportError(RequestError):
    pass


class TimeoutException(TransportError):
    pass


class ConnectTimeout(TimeoutException):
    pass


class ReadTimeout(TimeoutException):
    pass


class WriteTimeout(TimeoutException):
    pass


class NetworkError(TransportError):
    pass


class ConnectError(NetworkError):
    pass


class ReadError(NetworkError):
    pass


class ProtocolError(TransportError):
    pass


class RemoteProtocolError(ProtocolError):
    pass


class DecodingError(RequestError):
    pass


def is_a(exc: BaseException, *names: str) -> bool:
    """Whether `exc` is (a subclass of) the httpx error of one of these names, raised by
    httpx or by the probe's own path."""
    for cls in type(exc).__mro__:
        if cls.__name__ in names:
            module = cls.__module__
            if module == __name__ or module == "httpx" or module.startswith("httpx."):
                return True
    return False
