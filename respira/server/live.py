"""The live night monitor: the page at /live streams the microphone to the WebSocket /api/v1/live.

Each monitoring session is a `LiveSession`: it decodes the page's numbered PCM blocks, resamples
them to the model's rate (`respira.audio.stream_resampler`) and pushes them into a
`respira.monitor.SessionWriter`, the detector and store of `respira monitor`, so every event is
committed to the server's database (`ServerSettings.db`) the moment it is final. A session
outlives its connection: the page reconnects with the session's id and resends what was not
acknowledged; blocks already processed are acknowledged again and ignored, a gap is refused.
A session nobody reconnects to within IDLE_S (or still open when the server stops) is closed as
`interrupted`. The protocol is documented in docs/monitor.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import struct
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from respira import store
from respira.audio import stream_resampler
from respira.detect.config import detect_config
from respira.detect.events import Event
from respira.detect.pipeline import check_scorer
from respira.errors import RespiraError
from respira.inference import Model
from respira.monitor import MonitorConfig, SessionWriter, new_session
from respira.server.settings import ServerSettings
from respira.sources import LIVE_BLOCK_S

PATH = "/api/v1/live"
SEQ = struct.Struct("<I")
"""A binary message: the block's sequence number (uint32, little-endian), then its PCM samples."""
FORMATS = {"s16le": ("<i2", 1 / 32768), "f32le": ("<f4", 1.0)}
"""PCM encodings the page may send: numpy dtype and the scale to floats in [-1, 1]."""
RATES = (8000, 192000)
MAX_BLOCK_S = 10.0
IDLE_S = 3600.0
"""Seconds a session without a connection waits for its page to come back before it is closed."""
SOURCE = "browser"


class LiveError(Exception):
    """A refusal: sent to the page as {"type": "error", "message": ...}, then the socket closes with `code`."""

    def __init__(self, message: str, code: int = 4400, **extra: Any) -> None:
        super().__init__(message)
        self.code, self.extra = code, extra


class LiveSession:
    """One session fed by the page: its writer, the input's format, the next block it expects,
    and the socket it answers on (None while the page is away)."""

    def __init__(self, writer: SessionWriter, *, encoding: str, input_rate: int) -> None:
        self.writer, self.encoding, self.input_rate = writer, encoding, input_rate
        rate = writer.detector.sample_rate
        self.resampler = None if input_rate == rate else stream_resampler(orig_sample_rate=input_rate, sample_rate=rate)
        self.messages: list[dict] = []  # the session's events as the page gets them
        writer.on_event = lambda e, wall: self.messages.append(event_message(e, wall))
        self.next_seq = 0
        self.lock = asyncio.Lock()
        self.socket: WebSocket | None = None
        self.expiry: asyncio.Task | None = None
        self.closed: store.Session | None = None

    @property
    def id(self) -> int:
        return self.writer.session.id

    def feed(self, payload: bytes) -> None:
        """Decode, resample and detect in one block's samples (runs on a worker thread)."""
        dtype, scale = FORMATS[self.encoding]
        width = np.dtype(dtype).itemsize
        if len(payload) % width or len(payload) > MAX_BLOCK_S * self.input_rate * width:
            raise LiveError(f"a block must hold whole {self.encoding} samples, at most {MAX_BLOCK_S:g} s; "
                            f"got {len(payload)} bytes")
        y = np.frombuffer(payload, dtype).astype(np.float32) * np.float32(scale)
        if self.resampler is not None:
            y = self.resampler.resample_chunk(y, last=False)
        if len(y):
            self.writer.feed(y)

    def close(self, status: str) -> store.Session:
        """Flush the resampler and the detector and end the session (runs on a worker thread)."""
        if self.resampler is not None:
            tail = self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if len(tail):
                self.writer.feed(tail)
        self.closed = self.writer.close(status)
        self.writer.con.close()
        return self.closed

    def state(self) -> dict:
        """What the page shows: the session, the next block expected and every event so far."""
        s = self.writer.session
        return {"type": "session", "id": s.id, "name": s.name, "started_at": s.started_at, "model": s.model,
                "threshold": s.threshold, "sample_rate": s.sample_rate, "next_seq": self.next_seq,
                "seconds": self.writer.seconds, "events": self.messages}

    def ack(self) -> dict:
        return {"type": "ack", "seq": self.next_seq - 1, "seconds": self.writer.seconds,
                "active_s": self.writer.detector.active_s, "events": len(self.messages)}


def event_message(e: Event, wall_time: str | None) -> dict:
    """An event as the page gets it: seconds of the session's audio, and the wall-clock time."""
    return {"type": "event", "start": e.start, "end": e.end, "label": e.label, "score": e.score, "wall_time": wall_time}


class LiveSessions:
    """The open sessions of this server, by id."""

    def __init__(self, settings: ServerSettings, models: Mapping[str, Model]) -> None:
        self.settings, self.models = settings, models
        self.open: dict[int, LiveSession] = {}

    def check_token(self, hello: dict) -> None:
        token = self.settings.token
        if token and not hmac.compare_digest(str(hello.get("token") or "").encode(), token.encode()):
            raise LiveError("missing or wrong API token", code=4401)

    async def start(self, hello: dict) -> LiveSession:
        """A new session from the page's hello: sample_rate, format, and optionally model, name, keep_snippets."""
        rate, encoding = hello.get("sample_rate"), hello.get("format", "s16le")
        if not isinstance(rate, int) or not RATES[0] <= rate <= RATES[1]:
            raise LiveError(f"sample_rate must be a whole number of Hz in {RATES[0]}..{RATES[1]}, got {rate!r}")
        if encoding not in FORMATS:
            raise LiveError(f"format must be one of {', '.join(FORMATS)}, got {encoding!r}")
        name = str(hello.get("model") or next(iter(self.models)))
        model = self.models.get(name)
        if model is None:
            raise LiveError(f"unknown model {name!r} (loaded: {', '.join(self.models)})", code=4404)
        cfg = MonitorConfig(detect=detect_config(model, self.settings.detect, block_s=LIVE_BLOCK_S),
                            keep_snippets=bool(hello.get("keep_snippets")))
        info = {"kind": SOURCE, "format": encoding, "sample_rate": rate, "channels": 1}

        def begin() -> SessionWriter:
            check_scorer(model)
            con = store.connect(self.settings.db)
            try:
                session = new_session(con, model, cfg, source=SOURCE, model=name,
                                      name=str(hello["name"]) if hello.get("name") else None, source_info=info)
            except BaseException:
                con.close()
                raise
            return SessionWriter(model, con, session, cfg)

        live = LiveSession(await run_in_threadpool(begin), encoding=encoding, input_rate=rate)
        self.open[live.id] = live
        return live

    def find(self, hello: dict) -> LiveSession:
        """The open session the page's hello names to resume."""
        live = self.open.get(hello["session"]) if isinstance(hello["session"], int) else None
        if live is None:
            raise LiveError(f"session {hello['session']} is not open on this server (ended, or the server restarted)",
                            code=4404)
        if hello.get("sample_rate", live.input_rate) != live.input_rate or \
                hello.get("format", live.encoding) != live.encoding:
            raise LiveError("a resumed session keeps its sample_rate and format")
        return live

    async def attach(self, live: LiveSession, socket: WebSocket) -> None:
        """Make `socket` the one `live` answers on (a previous one is closed) and send it the session's state."""
        async with live.lock:
            old, live.socket = live.socket, socket
            if live.expiry is not None:
                live.expiry.cancel()
            await send(socket, live.state())
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close(code=4001, reason="replaced by a newer connection")

    def detach(self, live: LiveSession, socket: WebSocket) -> None:
        """The page went away: wait IDLE_S for it to come back."""
        if live.socket is socket and live.closed is None:
            live.socket = None
            live.expiry = asyncio.create_task(self._expire(live))

    async def block(self, live: LiveSession, data: bytes) -> None:
        """Process the next block once: an old one is acknowledged again, a gap refused."""
        if len(data) < SEQ.size:
            raise LiveError("a binary message starts with the block's 4-byte sequence number")
        (seq,) = SEQ.unpack_from(data)
        async with live.lock:
            if live.closed is not None:
                raise LiveError(f"session {live.id} has ended", code=4404)
            if seq > live.next_seq:
                raise LiveError(f"block {seq} arrived but block {live.next_seq} is next: audio is missing",
                                code=4409, expected=live.next_seq)
            if seq == live.next_seq:
                before = len(live.messages)
                await run_in_threadpool(live.feed, data[SEQ.size:])
                live.next_seq += 1
                for message in live.messages[before:]:
                    await send(live.socket, message)
            await send(live.socket, live.ack())

    async def end(self, live: LiveSession, status: str = "finished") -> None:
        """Close the session: the last events, then {"type": "ended", "session": the row} to its socket."""
        async with live.lock:
            if live.closed is not None:
                return
            before = len(live.messages)
            closed = await run_in_threadpool(live.close, status)
            self.open.pop(live.id, None)
            for message in live.messages[before:]:
                await send(live.socket, message)
            await send(live.socket, {"type": "ended", "session": closed.to_dict()})

    async def close_all(self) -> None:
        for live in list(self.open.values()):
            if live.expiry is not None:
                live.expiry.cancel()
            await self.end(live, "interrupted")

    async def _expire(self, live: LiveSession) -> None:
        await asyncio.sleep(IDLE_S)
        if live.socket is None:
            await self.end(live, "interrupted")


async def send(socket: WebSocket | None, message: dict) -> None:
    """Send to the page if it is there; a lost connection is the page's to recover (it resumes)."""
    if socket is not None:
        with contextlib.suppress(Exception):
            await socket.send_json(message)


def live_router(settings: ServerSettings, models: Mapping[str, Model], *, page: Path,
                headers: Mapping[str, str]) -> APIRouter:
    """GET /live (the `page` file, with `headers`) and its WebSocket; open sessions are closed when the server stops."""
    sessions = LiveSessions(settings, models)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await sessions.close_all()

    router = APIRouter(lifespan=lifespan)

    @router.get("/live", include_in_schema=False)
    async def live_page() -> FileResponse:
        return FileResponse(page, headers=headers)

    @router.websocket(PATH)
    async def live(socket: WebSocket) -> None:
        await socket.accept()
        session = None
        try:
            hello = await socket.receive_json()
            if not isinstance(hello, dict) or hello.get("type") != "hello":
                raise LiveError('the first message must be {"type": "hello", ...}')
            sessions.check_token(hello)
            session = sessions.find(hello) if hello.get("session") is not None else await sessions.start(hello)
            await sessions.attach(session, socket)
            await _answer(sessions, session, socket)
        except WebSocketDisconnect:
            pass
        except (LiveError, RespiraError, ValueError) as e:  # ValueError: a text message that is not JSON
            code = e.code if isinstance(e, LiveError) else 4400
            await send(socket, {"type": "error", "message": str(e), **getattr(e, "extra", {})})
            with contextlib.suppress(Exception):
                await socket.close(code=code)
        finally:
            if session is not None:
                sessions.detach(session, socket)

    return router


async def _answer(sessions: LiveSessions, live: LiveSession, socket: WebSocket) -> None:
    """Answer the page's messages: binary blocks, and {"type": "end"} to finish the session."""
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await sessions.block(live, message["bytes"])
        elif _json(message.get("text")).get("type") == "end":
            await sessions.end(live)
            await socket.close()
            return


def _json(text: str | None) -> dict:
    value = json.loads(text or "null")
    if not isinstance(value, dict):
        raise LiveError("a text message must be a JSON object")
    return value
