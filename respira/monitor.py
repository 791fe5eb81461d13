"""Monitoring: live or batch audio -> events committed to SQLite (`respira.store`) the moment they are final.

Sources, each giving mono float32 blocks at the model's rate: a microphone (`mic_blocks`, needs
the optional `sounddevice` package), raw PCM or a WAV stream from a pipe or a growing file
(`open_pcm` over stdin or a `GrowingFile`), or a whole audio file (`respira.audio.stream`).
`monitor_stream` feeds the blocks to a `StreamDetector`, stores each event it releases (with
an optional WAV snippet: no raw audio is kept otherwise) and the progress after every block,
and closes the session. `session_report` turns a stored session into the night report.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import numpy as np

from respira import store
from respira.detect.config import DetectConfig
from respira.detect.events import Event, write_events_csv
from respira.detect.gate import GateState, active_regions
from respira.detect.pipeline import Scorer, StreamDetector
from respira.detect.report import night_report_html, summary
from respira.detect.state import FileResult
from respira.errors import AudioError, ConfigError

NO_MIC = ("no sound input device found; use --input stdin with ffmpeg, e.g. "
          "ffmpeg -f pulse -i default -f s16le -ac 1 -ar 16000 - | respira monitor --input stdin "
          "(macOS: -f avfoundation -i :0, Windows: -f dshow -i audio=NAME)")


def _s24(b: bytes) -> np.ndarray:
    u = np.frombuffer(b, np.uint8).reshape(-1, 3).astype(np.int32)
    return (((u[:, 0] | (u[:, 1] << 8) | (u[:, 2] << 16)) ^ 0x800000) - 0x800000).astype(np.float32) / 2**23


ENCODINGS: dict[str, tuple[int, Callable[[bytes], np.ndarray]]] = {
    "s16le": (2, lambda b: np.frombuffer(b, "<i2").astype(np.float32) / 2**15),
    "s24le": (3, _s24),
    "s32le": (4, lambda b: (np.frombuffer(b, "<i4") / 2**31).astype(np.float32)),
    "f32le": (4, lambda b: np.frombuffer(b, "<f4").astype(np.float32)),
}
"""Raw PCM sample encoding -> (bytes per sample, bytes -> float32 samples in [-1, 1])."""

_WAV_ENCODINGS = {(1, 16): "s16le", (1, 24): "s24le", (1, 32): "s32le", (3, 32): "f32le"}  # (format tag, bits)


@dataclass(frozen=True)
class PcmFormat:
    """Raw PCM: `encoding` (a key of ENCODINGS), `sr` Hz, interleaved `channels` (averaged to mono)."""

    encoding: str = "s16le"
    sr: int = 16000
    channels: int = 1

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"unknown PCM format {self.encoding!r}; choose from {', '.join(ENCODINGS)}")
        if self.sr <= 0 or self.channels <= 0:
            raise ConfigError(f"PCM needs a sample rate > 0 and channels > 0, got {self.sr} Hz, {self.channels} channels")


@dataclass(frozen=True)
class MonitorConfig:
    """A session's settings: the detector's (`detect.block_s`: seconds per block read; the
    threshold decides what is an event); `keep_snippets`: store each event's audio as 16-bit
    WAV with `snippet_pad_s` around it (from the last `history_s` seconds kept in memory)."""

    detect: DetectConfig = field(default_factory=lambda: DetectConfig(block_s=0.5))
    keep_snippets: bool = False
    snippet_pad_s: float = 0.25
    history_s: float = 30.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MonitorResult:
    """The closed session, its events in time order, and whether a stop request ended it early."""

    session: store.Session
    events: list[Event]
    stopped: bool


# ----------------------------------------------------------------------------- sessions


def new_session(con: sqlite3.Connection, scorer: Scorer, cfg: MonitorConfig, *, source: str, model: str,
                name: str | None = None, source_info: dict | None = None) -> store.Session:
    """Start a running session for `source` ("mic", "stdin" or a file path) analysed with `scorer`
    (named `model`); params hold the settings, the window length and `source_info`."""
    name = name or datetime.now().strftime("%Y-%m-%d_%H%M%S")
    if name.isdigit() or name == "latest":
        raise ConfigError(f"--session-name {name!r} would be read as an id or `latest`; choose a name with a letter")
    params = {"monitor": cfg.to_dict(), "window_s": float(cfg.detect.window_s or scorer.clip_seconds),
              "source": source_info or {}}
    return store.start_session(con, name=name, source=source, model=model, threshold=cfg.detect.threshold,
                               sample_rate=int(scorer.sample_rate), params=params)


def monitor_stream(
    blocks: Iterable[np.ndarray],
    scorer: Scorer,
    con: sqlite3.Connection,
    session: store.Session,
    cfg: MonitorConfig = MonitorConfig(),
    *,
    live: bool = True,
    stop: threading.Event | None = None,
    on_event: Callable[[Event, str | None], None] | None = None,
) -> MonitorResult:
    """Detect in `blocks` (mono float32 at scorer.sample_rate, in order) and store into `session`.

    Each event is inserted and committed as soon as the detector releases it, then passed to
    `on_event(event, wall_time)`; the progress (seconds analysed, seconds active so far) is
    updated after every block. `live`: the blocks are real-time audio, so events get a
    wall_time (the session start + their start). `stop` set: no further block is read. At the
    end the detector flushes its last events and the session is closed (`finished`; on an
    error from the blocks it is closed as `interrupted` and the error propagates).
    """
    detector = StreamDetector(scorer, cfg.detect, file=session.source)
    sr = detector.sr
    recent = _History(seconds=cfg.history_s + cfg.detect.block_s, sr=sr) if cfg.keep_snippets else None
    active = _ActiveTime(sr=sr, cfg=cfg.detect)
    origin = datetime.fromisoformat(session.started_at) if live else None
    found: list[Event] = []

    def record(events: Iterable[Event]) -> None:
        for e in events:
            wall = (origin + timedelta(seconds=e.start)).isoformat(timespec="milliseconds") if origin else None
            snippet = recent.wav(e.start - cfg.snippet_pad_s, e.end + cfg.snippet_pad_s) if recent else None
            store.add_event(con, session.id, e, wall_time=wall, snippet=snippet)
            found.append(e)
            if on_event is not None:
                on_event(e, wall)

    stopped = False
    try:
        for block in blocks:
            if stop is not None and stop.is_set():
                stopped = True
                break
            block = np.asarray(block, dtype=np.float32)
            if recent is not None:
                recent.add(block)
            record(detector.feed(block))
            active.add(block)
            store.update_progress(con, session.id, seconds_analysed=detector.state.samples / sr, seconds_active=active.seconds)
        stopped = stopped or (stop is not None and stop.is_set())
    except BaseException:
        store.end_session(con, session.id, seconds_analysed=detector.state.samples / sr, seconds_active=active.seconds,
                          status="interrupted")
        raise
    result = detector.finish()
    record(result.events[detector.released:])
    closed = store.end_session(con, session.id, seconds_analysed=result.duration_s, seconds_active=result.active_s)
    return MonitorResult(closed, found, stopped)


# ----------------------------------------------------------------------------- sources


def open_pcm(f: BinaryIO, *, fmt: PcmFormat, sr: int, block_s: float) -> tuple[PcmFormat, Iterator[np.ndarray]]:
    """A PCM byte stream -> (its format, mono float32 blocks of about block_s s at `sr`).

    A stream that starts with a WAV header (RIFF/WAVE, PCM 16/24/32-bit or float 32-bit) is read
    with the header's format, to the end of the stream whatever sizes the header declares (a
    recorder may not have written them yet); anything else is raw PCM in `fmt`. Reads the
    header now (blocking until it arrives). Raises AudioError for an unusable WAV header.
    """
    head = _read_exactly(f, 4)
    if head == b"RIFF":
        fmt = _wav_header(f)
        head = b""
    return fmt, _resampled(_pcm_blocks(f, head, fmt=fmt, block_s=block_s), orig_sr=fmt.sr, sr=sr)


class GrowingFile:
    """A file being written, read as a stream: `read(n)` waits for n more bytes, and returns fewer
    (the end) once the file has not grown for `idle_s` seconds or `stop` is set."""

    def __init__(self, path: str | os.PathLike, *, idle_s: float = 10.0, poll_s: float = 0.1,
                 stop: threading.Event | None = None) -> None:
        try:
            self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise AudioError(f"{path}: cannot open: {e.strerror or e}") from None
        self.idle_s, self.poll_s, self.stop = idle_s, poll_s, stop

    def read(self, n: int) -> bytes:
        out = bytearray()
        last_growth = time.monotonic()
        while len(out) < n:
            chunk = self._f.read(n - len(out))
            if chunk:
                out += chunk
                last_growth = time.monotonic()
            elif time.monotonic() - last_growth >= self.idle_s or (self.stop is not None and self.stop.is_set()):
                break
            else:
                time.sleep(self.poll_s)
        return bytes(out)

    def close(self) -> None:
        self._f.close()


def mic_blocks(*, sr: int, block_s: float, input_sr: int | None = None) -> Iterator[np.ndarray]:
    """The default microphone through `sounddevice`, mono float32 blocks of block_s s at `sr`
    (recorded at input_sr, default sr, and resampled). Raises AudioError now when sounddevice
    is missing or no input device can record."""
    rate = input_sr or sr
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:  # OSError: the PortAudio library is missing
        raise AudioError(f"{NO_MIC} [microphone input needs the sounddevice package: "
                         f"pip install 'respira[live]' ({e})]") from None
    try:
        sd.check_input_settings(samplerate=rate, channels=1, dtype="float32")
    except Exception as e:  # sounddevice raises PortAudioError or ValueError for a missing device
        raise AudioError(f"{NO_MIC} [{e}]") from None

    def record() -> Iterator[np.ndarray]:
        q: queue.Queue[np.ndarray] = queue.Queue()
        with sd.InputStream(samplerate=rate, channels=1, dtype="float32", blocksize=max(1, round(block_s * rate)),
                            callback=lambda data, frames, t, status: q.put(data[:, 0].copy())):
            while True:
                yield q.get()

    return _resampled(record(), orig_sr=rate, sr=sr)


def background(blocks: Iterable[np.ndarray], stop: threading.Event, *, buffered: int = 16) -> Iterator[np.ndarray]:
    """`blocks`, read ahead on a daemon thread so that waiting for input never delays a stop:
    iteration ends as soon as `stop` is set. Errors from the source are raised here."""
    q: queue.Queue = queue.Queue(maxsize=buffered)
    end = object()

    def pump() -> None:
        try:
            for b in blocks:
                q.put(b)
        except BaseException as e:  # handed to the consumer
            q.put(e)
        q.put(end)

    threading.Thread(target=pump, name="respira-monitor-input", daemon=True).start()
    while not stop.is_set():
        try:
            item = q.get(timeout=0.1)
        except queue.Empty:
            continue
        if item is end:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


# ----------------------------------------------------------------------------- reports


def session_report(con: sqlite3.Connection, session: store.Session, out_dir: str | os.PathLike) -> dict:
    """Write OUT/summary.json, OUT/events.csv and OUT/report.html for a stored session; returns
    the summary: respira.detect.report.summary's keys (coughs, bouts, coughs_per_hour,
    hours_analysed, hours_active, ...) plus `session` (the session row). No window scores are
    stored, so the timeline shows the events and their counts per bin."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = _detect_config(session)
    events = [e.to_event(session.source) for e in store.events(con, session.id)]
    result = FileResult(session.source, tuple(events), np.zeros(0, np.float16), cfg.hop_s,
                        float(session.params.get("window_s", 1.0)), session.seconds_analysed, session.seconds_active,
                        session.threshold)
    info = summary([result], model=session.model, cfg=cfg) | {"session": session.to_dict()}
    write_events_csv(events, out / "events.csv")
    (out / "summary.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    night_report_html(info, [result], out)
    return info


def _detect_config(session: store.Session) -> DetectConfig:
    """The session's DetectConfig (settings this version does not know are ignored)."""
    stored = session.params.get("monitor", {}).get("detect", {})
    known = {f.name for f in dataclasses.fields(DetectConfig)}
    return DetectConfig(**{k: v for k, v in stored.items() if k in known} | {"threshold": session.threshold})


# ----------------------------------------------------------------------------- internals


class _History:
    """The last `seconds` of audio, to cut event snippets from."""

    def __init__(self, *, seconds: float, sr: int) -> None:
        self.sr, self.size = sr, max(1, round(seconds * sr))
        self.y, self.start = np.zeros(0, np.float32), 0  # samples from sample `start` of the stream on

    def add(self, block: np.ndarray) -> None:
        self.y = np.concatenate([self.y, block])
        drop = max(0, len(self.y) - self.size)
        self.y, self.start = self.y[drop:], self.start + drop

    def wav(self, start_s: float, end_s: float) -> bytes:
        """Samples [start_s, end_s) s of the stream (clipped to what is kept) as a 16-bit mono WAV."""
        import soundfile as sf

        a = min(max(0, round(start_s * self.sr) - self.start), len(self.y))
        b = min(max(a, round(end_s * self.sr) - self.start), len(self.y))
        buf = io.BytesIO()
        sf.write(buf, np.clip(self.y[a:b], -1.0, 1.0), self.sr, format="WAV", subtype="PCM_16")
        return buf.getvalue()


class _ActiveTime:
    """Seconds within gate_pad_s of a loud frame so far (the gate run alongside the detector's)."""

    def __init__(self, *, sr: int, cfg: DetectConfig) -> None:
        self.sr, self.cfg, self.gate = sr, cfg, GateState()
        self.seconds, self._until = 0.0, 0.0

    def add(self, block: np.ndarray) -> None:
        for a, b in active_regions(block, sr=self.sr, state=self.gate, cfg=self.cfg):
            a = max(a, self._until)
            if b > a:
                self.seconds += b - a
            self._until = max(self._until, b)


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    """n bytes from f (fewer only at the end of the stream)."""
    out = b""
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _wav_header(f: BinaryIO) -> PcmFormat:
    """Parse a WAV header after its "RIFF" tag, up to the start of the samples; their format."""
    riff = _read_exactly(f, 8)
    if len(riff) < 8 or riff[4:] != b"WAVE":
        raise AudioError("the input starts with RIFF but is not a WAV stream")
    fmt = None
    while True:
        head = _read_exactly(f, 8)
        if len(head) < 8:
            raise AudioError("WAV stream: no data chunk before the end of the input")
        tag, size = head[:4], int.from_bytes(head[4:], "little")
        if tag == b"data":
            if fmt is None:
                raise AudioError("WAV stream: the data chunk comes before the fmt chunk")
            return fmt
        body = _read_exactly(f, size + size % 2)
        if tag == b"fmt ":
            fmt = _wav_format(body)


def _wav_format(body: bytes) -> PcmFormat:
    if len(body) < 16:
        raise AudioError("WAV stream: fmt chunk too short")
    def field(a: int, b: int) -> int:
        return int.from_bytes(body[a:b], "little")

    code, channels, rate, bits = field(0, 2), field(2, 4), field(4, 8), field(14, 16)
    if code == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's first two bytes
        code = field(24, 26)
    encoding = _WAV_ENCODINGS.get((code, bits))
    if encoding is None:
        raise AudioError(f"WAV stream: unsupported sample format (format tag {code}, {bits} bits); "
                         f"use 16/24/32-bit PCM or 32-bit float")
    try:
        return PcmFormat(encoding, rate, channels)
    except ConfigError as e:
        raise AudioError(f"WAV stream: {e}") from None


def _pcm_blocks(f: BinaryIO, head: bytes, *, fmt: PcmFormat, block_s: float) -> Iterator[np.ndarray]:
    """Mono float32 blocks of round(block_s * fmt.sr) samples (the last may be shorter) from f,
    after the bytes `head` already read; a trailing partial frame is dropped."""
    width, decode = ENCODINGS[fmt.encoding]
    frame = width * fmt.channels
    want = max(1, round(block_s * fmt.sr)) * frame
    pending = head
    while True:
        data = pending + _read_exactly(f, want - len(pending)) if len(pending) < want else pending
        whole = len(data) - len(data) % frame
        if whole:
            y = decode(data[:whole])
            if fmt.channels > 1:
                y = y.reshape(-1, fmt.channels).mean(axis=1, dtype=np.float32)
            yield np.clip(y, -1.0, 1.0)
        pending = data[whole:]
        if len(data) < want:
            return


def _resampled(blocks: Iterator[np.ndarray], *, orig_sr: int, sr: int) -> Iterator[np.ndarray]:
    if orig_sr == sr:
        return blocks
    from respira.audio import resample_stream

    return resample_stream(blocks, orig_sr=orig_sr, sr=sr)
