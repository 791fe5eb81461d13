"""`ApiError`: a request the server refuses, with its HTTP status and a message in words."""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    """Answered as ``{"error": message}`` with `status` (and `headers`) by the app's handler."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
