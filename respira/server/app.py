"""The FastAPI app: /health, the versioned API under /api/v1, the page at /, the night monitor at /live.

Every refusal is JSON ``{"error": "..."}`` with its status: 400 no audio or a bad request,
401 a missing or wrong token, 404 an unknown model or path, 413 an upload over the size
limit, 415 bytes that do not decode as audio (the content is sniffed; names and
Content-Type are never trusted), 422 audio over the length limit or a bad query
parameter, 503 too many requests at once. An unexpected failure is a 500 with a generic
message (the traceback goes to the server log only).
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from respira import __version__
from respira.detect.pipeline import check_scorer
from respira.errors import ModelError
from respira.inference import Model
from respira.server import jobs
from respira.server.api_errors import ApiError, add_error_handlers, token_check
from respira.server.live import PATH as LIVE_PATH, live_router
from respira.server.models import load_models, model_info
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
                              "coughs in long recordings. The live night monitor at /live streams the "
                              f"microphone to the WebSocket {LIVE_PATH} and stores each cough in the "
                              "server's SQLite database (the protocol: docs/monitor.md).")
    app.state.settings, app.state.models = settings, models
    add_error_handlers(app)

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
                    dependencies=[Depends(token_check(settings.token))] if settings.token else [])

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
        try:
            check_scorer(chosen)
        except ModelError as e:
            raise ApiError(400, f"model {chosen.name!r}: {e}") from None
        asked = {**settings.detect, **({} if threshold is None else {"threshold": threshold})}
        async with pool.admit():
            with tempfile.TemporaryDirectory(prefix="respira-upload-") as private:
                path = Path(private) / "upload"
                with open(path, "wb") as f:
                    await receive_upload(request, f.write, limit=settings.max_upload_bytes)
                return await pool.run(jobs.detect, chosen, path, max_s=settings.max_detect_s, images=images,
                                      settings=asked)

    app.include_router(api)
    app.include_router(live_router(settings, models, page=STATIC_DIR / "live.html", headers=PAGE_HEADERS))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    return app
