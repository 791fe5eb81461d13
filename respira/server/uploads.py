"""Uploads in: the raw request body or the multipart field ``file``, counted against the size limit.

The audio bytes are handed to a `write` callable block by block as they arrive (a BytesIO for
/predict, a private temporary file for /detect), so nothing but the audio is kept and no name
from the request is ever used as a path. The size limit is checked on the declared
Content-Length and again on the bytes actually received, so a client that lies about its
length (or sends no length) is cut off at the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request

from respira.server.api_errors import ApiError

FIELD = "file"
"""The multipart field that holds the audio."""

Write = Callable[[bytes], Any]


async def receive_upload(request: Request, write: Write, *, limit: int) -> int:
    """Stream the audio of `request` into `write`; returns its size in bytes.

    The body is the audio itself, or multipart/form-data with the audio in field "file".
    ApiError 413 when the body is (or claims to be) over `limit` bytes; 400 when there is no audio.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, f"bad Content-Length header {declared!r}")
        if int(declared) > limit:
            raise _too_large(limit)
    content_type = request.headers.get("content-type", "")
    multipart = _MultipartFile(content_type, write) if content_type.lower().startswith("multipart/") else None
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _too_large(limit)
            if multipart is not None:
                multipart.feed(chunk)
            elif chunk:
                write(chunk)
    except ClientDisconnect:
        raise ApiError(400, "the client disconnected during the upload") from None
    size = multipart.finish() if multipart is not None else received
    if size == 0:
        where = f"multipart field '{FIELD}' is empty" if multipart is not None else "empty request body"
        raise ApiError(400, f"no audio: {where}; send the audio as the request body "
                            f"or as the multipart field '{FIELD}'")
    return size


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"upload too large: the limit is {limit / 1e6:g} MB")


class _MultipartFile:
    """A multipart/form-data parser that passes the data of the first part named "file" to `write`."""

    def __init__(self, content_type: str, write: Write) -> None:
        from python_multipart.multipart import MultipartParser, parse_options_header

        kind, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise ApiError(400, f"unsupported multipart body ({content_type!r}): "
                                "send multipart/form-data with a boundary")
        self._write = write
        self._parse_options = parse_options_header
        self._field, self._value = bytearray(), bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._capturing = False
        self.found = False
        self.size = 0
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        })

    def feed(self, chunk: bytes) -> None:
        from python_multipart.exceptions import MultipartParseError

        try:
            self._parser.write(chunk)
        except MultipartParseError as e:
            raise ApiError(400, f"malformed multipart body: {e}") from None

    def finish(self) -> int:
        """The bytes of field "file"; ApiError 400 when the body had no such field."""
        self._parser.finalize()
        if not self.found:
            raise ApiError(400, f"the multipart body has no field '{FIELD}' (send the audio as '{FIELD}')")
        return self.size

    def _part_begin(self) -> None:
        self._headers.clear()

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, params = self._parse_options(self._headers.get(b"content-disposition", b""))
        self._capturing = not self.found and params.get(b"name") == FIELD.encode()
        self.found = self.found or self._capturing

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._capturing and end > start:
            self._write(data[start:end])
            self.size += end - start

    def _part_end(self) -> None:
        self._capturing = False
