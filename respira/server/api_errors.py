"""Refusals: `ApiError` (a request refused, with its HTTP status and a message in words), the
API token check, and the handlers that answer every error as JSON ``{"error": "..."}``."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from respira.errors import RespiraError

_log = logging.getLogger("respira.server")


class ApiError(Exception):
    """Answered as ``{"error": message}`` with `status` (and `headers`) by the app's handler."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def token_check(token: str):
    """A dependency that lets a request through only with ``Authorization: Bearer <token>``."""
    bearer = HTTPBearer(auto_error=False, description="The server's API token (respira serve --token).")
    challenge = {"WWW-Authenticate": "Bearer"}

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None:
            raise ApiError(401, "missing API token: send the header 'Authorization: Bearer <token>'", headers=challenge)
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise ApiError(401, "wrong API token", headers=challenge)

    return check


def add_error_handlers(app: FastAPI) -> None:
    """Answer ApiError with its status, HTTP and validation errors as they are, RespiraError as 422,
    anything else as a generic 500 (its traceback goes to the log)."""

    def answer(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return answer(e.status, e.message, e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return answer(e.status_code, str(e.detail), e.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, e: RequestValidationError) -> JSONResponse:
        problems = ["{} {!r}: {}".format(err["loc"][0], ".".join(map(str, err["loc"][1:])), err["msg"])
                    for err in e.errors()]
        return answer(422, "bad request: " + "; ".join(problems))

    @app.exception_handler(RespiraError)
    async def respira_error(request: Request, e: RespiraError) -> JSONResponse:
        return answer(422, str(e))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        _log.exception("unexpected error in %s %s", request.method, request.url.path)
        return answer(500, "internal server error (see the server log)")
