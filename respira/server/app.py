"""The FastAPI app: /health, the versioned API under /api/v1, and the page at /.

Every refusal is JSON ``{"error": "..."}`` with its status: 400 no audio or a bad request,
401 a missing or wrong token, 404 an unknown model or path, 413 an upload over the size
limit, 415 bytes that do not decode as audio (the content is sniffed; names and
Content-Type are never trusted), 422 audio over the length limit or a bad query
parameter, 503 too many requests at once. An unexpected failure is a 500 with a generic
message (the traceback goes to the server log only).
"""

from __future__ import annotations

import hmac
import io
import logging
import math
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from respira import __version__
from respira.errors import ConfigError, RespiraError
from respira.inference import Model, load_model
from respira.server import jobs
from respira.server.api_errors import ApiError
from respira.server.schemas import Detection, ErrorBody, Health, ModelInfo, Prediction
from respira.server.settings import ServerSettings
from respira.server.uploads import FIELD, receive_upload
from respira.server.workers import WorkerPool

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
"""The page loads nothing from elsewhere: images come as data URLs, recordings as blob URLs."""

_log = logging.getLogger("respira.server")

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": f"The audio (wav, flac, ogg, opus, mp3, webm, m4a, ...): the raw request body, "
                       f"or multipart/form-data with the audio in field '{FIELD}'. The format is "
                       "recognised from the content.",
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": [FIELD],
                                               "properties": {FIELD: {"type": "string", "format": "binary"}}}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "audio/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in {
        400: "no audio in the request", 401: "missing or wrong API token", 404: "unknown model",
        413: "upload too large", 415: "not decodable audio", 422: "audio too long, or a bad parameter",
        503: "too many requests at once",
    }.items()
}


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The app serving `settings.models` (loaded now: ModelError when one is missing)."""
    settings = settings or ServerSettings()
    models = load_models(settings.models)
    default = next(iter(models))
    pool = WorkerPool(workers=settings.workers, max_queue=settings.max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.start()
        try:
            yield
        finally:
            pool.stop()

    app = FastAPI(title="respira", version=__version__, lifespan=lifespan,
                  description="Classify coughs and other respiratory sounds in audio clips, and count "
                              "coughs in long recordings.")
    app.state.settings, app.state.models = settings, models
    _add_error_handlers(app)

    def pick(name: str | None) -> Model:
        model = models.get(name or default)
        if model is None:
            raise ApiError(404, f"unknown model {name!r} (loaded: {', '.join(models)})")
        return model

    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> dict:
        """Liveness: answers at once, even while models are busy."""
        return {"status": "ok", "models": list(models)}

    api = APIRouter(prefix="/api/v1", responses=_ERRORS,
                    dependencies=[Depends(_token_check(settings.token))] if settings.token else [])

    @api.get("/models", response_model=list[ModelInfo], tags=["models"])
    async def list_models() -> list[dict]:
        """The loaded models; the first is used when a request names none."""
        return [model_info(m) for m in models.values()]

    @api.post("/predict", response_model=Prediction, response_model_exclude_none=True, tags=["analysis"],
              openapi_extra=_UPLOAD_BODY)
    async def predict(
        request: Request,
        model: str | None = Query(None, description="A loaded model's name (default: the first)."),
        images: bool = Query(False, description="Also return waveform, MFCC, mel and probability images."),
    ) -> dict:
        """Classify one clip (up to max_predict_s seconds)."""
        chosen = pick(model)
        async with pool.admit():
            buffer = io.BytesIO()
            await receive_upload(request, buffer.write, limit=settings.max_upload_bytes)
            return await pool.run(jobs.predict, chosen, buffer.getvalue(), max_s=settings.max_predict_s,
                                  images=images)

    @api.post("/detect", response_model=Detection, response_model_exclude_none=True, tags=["analysis"],
              openapi_extra=_UPLOAD_BODY)
    async def detect(
        request: Request,
        model: str | None = Query(None, description="A loaded binary model's name (default: the first)."),
        images: bool = Query(False, description="Also return the score timeline image."),
        threshold: float | None = Query(None, ge=0.0, le=1.0,
                                        description="Event score threshold (default: the model's decision threshold)."),
    ) -> dict:
        """Find coughs in a long recording (up to max_detect_s seconds): events and counts per hour."""
        chosen = pick(model)
        if chosen.task != "classification" or chosen.positive is None:
            raise ApiError(400, f"model {chosen.name!r} cannot detect events: it needs a binary model with a "
                                f"positive class, and this one has classes {list(chosen.classes)}")
        async with pool.admit():
            with tempfile.TemporaryDirectory(prefix="respira-upload-") as private:
                path = Path(private) / "upload"
                with open(path, "wb") as f:
                    await receive_upload(request, f.write, limit=settings.max_upload_bytes)
                return await pool.run(jobs.detect, chosen, path, max_s=settings.max_detect_s, images=images,
                                      threshold=threshold)

    app.include_router(api)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    return app


def load_models(names: tuple[str, ...]) -> dict[str, Model]:
    """Built-in names or bundle paths -> {model name: Model}, in order; ConfigError when two share a name."""
    models: dict[str, Model] = {}
    for name in names:
        model = load_model(name)
        if model.name in models:
            raise ConfigError(f"two models are named {model.name!r} ({name}); rename one bundle file")
        models[model.name] = model
    return models


def model_info(model: Model) -> dict:
    return {
        "name": model.name, "task": model.task, "classes": list(model.classes), "positive": model.positive,
        "threshold": float(model.meta.thresholds["decision"]), "sample_rate": model.sample_rate,
        "clip_seconds": model.clip_seconds, "metrics": _finite(model.meta.provenance.get("metrics", {})),
    }


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities (which JSON cannot carry) become null."""
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _token_check(token: str):
    """A dependency that lets a request through only with ``Authorization: Bearer <token>``."""
    bearer = HTTPBearer(auto_error=False, description="The server's API token (respira serve --token).")
    challenge = {"WWW-Authenticate": "Bearer"}

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None:
            raise ApiError(401, "missing API token: send the header 'Authorization: Bearer <token>'", headers=challenge)
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise ApiError(401, "wrong API token", headers=challenge)

    return check


def _add_error_handlers(app: FastAPI) -> None:
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
