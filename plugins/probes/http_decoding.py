"""A plain response's headers, text encoding and content decoding, by httpx's own rules
but without importing httpx: a worker whose http checks go well never loads it (~8 MB).

Each function here answers exactly as httpx 0.x does for the same bytes (tests compare
them); what httpx does with an encoding this module does not know (brotli, zstd) is left
to httpx itself.
"""

from __future__ import annotations

import codecs
import zlib
from typing import Any


class PlainHeaders:
    """Response headers as `httpx.Headers` reads them: case-insensitive names, repeated
    ones joined with ", ", bytes decoded as ascii, else utf-8, else latin-1."""

    __slots__ = ("_encoding", "raw")

    def __init__(self, raw: list[tuple[bytes, bytes]]):
        self.raw = raw
        self._encoding: str | None = None

    @property
    def encoding(self) -> str:
        if self._encoding is None:
            self._encoding = "iso-8859-1"  # decodes any byte
            for encoding in ("ascii", "utf-8"):
                try:
                    for key, value in self.raw:
                        key.decode(encoding)
                        value.decode(encoding)
                except UnicodeDecodeError:
                    continue
                self._encoding = encoding
                break
        return self._encoding

    def get_list(self, key: str) -> list[str]:
        encoding = self.encoding
        wanted = key.lower().encode(encoding)
        return [v.decode(encoding) for k, v in self.raw if k.lower() == wanted]

    def get(self, key: str, default: Any = None) -> Any:
        values = self.get_list(key)
        return ", ".join(values) if values else default

    def __getitem__(self, key: str) -> str:
        values = self.get_list(key)
        if not values:
            raise KeyError(key)
        return ", ".join(values)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self.get_list(key))


def text_encoding(headers: PlainHeaders) -> str:
    """The encoding httpx would decode this response's text with: the Content-Type's
    charset when Python knows it, else utf-8."""
    content_type = headers.get("Content-Type")
    if content_type is not None:
        import email.message

        message = email.message.Message()
        message["content-type"] = content_type
        charset = message.get_content_charset(failobj=None)
        if charset is not None:
            try:
                codecs.lookup(charset)
            except LookupError:
                pass
            else:
                return charset
    return "utf-8"


def content_decoder(raw_headers: list[tuple[bytes, bytes]]) -> Any:
    """A decoder for the body's Content-Encoding, as httpx builds it; None when there is no
    such header."""
    if not any(name.lower() == b"content-encoding" for name, _ in raw_headers):
        return None
    values = [
        item.strip().lower()
        for value in PlainHeaders(raw_headers).get_list("content-encoding")
        for item in value.split(",")
    ]
    if not all(value in _DECODERS for value in values):
        # one this module leaves to httpx (br, zstd when installed; others it skips)
        import httpx

        return httpx.Response(200, headers=raw_headers)._get_content_decoder()
    decoders = [_DECODERS[value]() for value in values if value != "identity"]
    if not decoders:
        return _Identity()
    if len(decoders) == 1:
        return decoders[0]
    return _Multi(decoders)


def _decoding_error(exc: zlib.error) -> Exception:
    from watchkeeper.plugins.probes.http_errors import DecodingError

    return DecodingError(str(exc))


class _Identity:
    def decode(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Zlib:
    """A zlib decompressor whose errors are httpx's DecodingError."""

    wbits = zlib.MAX_WBITS | 16  # gzip

    def __init__(self) -> None:
        self.decompressor = zlib.decompressobj(self.wbits)

    def decode(self, data: bytes) -> bytes:
        try:
            return self.decompressor.decompress(data)
        except zlib.error as exc:
            raise _decoding_error(exc) from exc

    def flush(self) -> bytes:
        try:
            return self.decompressor.flush()
        except zlib.error as exc:
            raise _decoding_error(exc) from exc


_GZip = _Zlib


class _Deflate(_Zlib):
    """zlib-wrapped deflate, or raw deflate when the first bytes say so (as httpx)."""

    wbits = zlib.MAX_WBITS

    def __init__(self) -> None:
        super().__init__()
        self.first_attempt = True

    def decode(self, data: bytes) -> bytes:
        if not self.first_attempt:
            return super().decode(data)
        self.first_attempt = False
        try:
            return self.decompressor.decompress(data)
        except zlib.error:
            self.decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
            return super().decode(data)


class _Multi:
    """Several encodings, undone in the reverse of the order they were applied."""

    def __init__(self, children: list[Any]) -> None:
        self.children = list(reversed(children))

    def decode(self, data: bytes) -> bytes:
        for child in self.children:
            data = child.decode(data)
        return data

    def flush(self) -> bytes:
        data = b""
        for child in self.children:
            data = child.decode(data) + child.flush()
        return data


_DECODERS: dict[str, Any] = {"identity": _Identity, "gzip": _GZip, "deflate": _Deflate}
