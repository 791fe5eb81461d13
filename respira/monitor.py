"""Monitoring: live or batch audio -> events committed to SQLite (`respira.store`) the moment they are final.

`monitor` is the job (`respira.monitor(...)`, `respira monitor`): it opens a `respira.sources.Source`,
starts a session and runs `monitor_stream`, which feeds the blocks to a `SessionWriter`: a
`StreamDetector` whose events are stored the moment it releases them (with an optional WAV snippet:
no raw audio is kept otherwise), the progress after every block, and the session closed at the end.
The server's live page pushes its blocks into a `SessionWriter` too. `session_report` turns a stored
session into the night report, written as `respira detect` writes its own.
"""

from __future__ import annotations

import dataclasses
import io
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from respira import store
from respira.detect.config import DetectConfig, detect_config
from respira.detect.events import Event
from respira.detect.pipeline import Scorer, StreamDetector, check_scorer
from respira.detect.night_report import summary
from respira.detect.job import write_night
from respira.detect.state import FileResult
from respira.errors import ConfigError
from respira.callable_module import callable_module
from respira.signals import stop_on_signals
from respira.sources import Source, background

OnEvent = Callable[[Event, "str | None"], None]
"""Called with each event as it is stored, and its wall-clock time (None for a whole file)."""


@dataclass(frozen=True)
class MonitorConfig:
    """A session's settings: the detector's (`detect.block_s`: seconds per block read; the
    threshold decides what is an event); `keep_snippets`: store each event's audio as 16-bit
    WAV with `snippet_pad_s` around it (from the last `history_s` seconds kept in memory)."""

    detect: DetectConfig = field(default_factory=lambda: DetectConfig(block_s=0.5))
    keep_snippets: bool = False
    snippet_pad_s: float = 0.25
    history_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.snippet_pad_s >= 0:
            raise ConfigError(f"monitor.snippet_pad_s: must be >= 0, got {self.snippet_pad_s}")
        if not self.history_s > 0:
            raise ConfigError(f"monitor.history_s: must be > 0, got {self.history_s}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MonitorResult:
    """The closed session, its events in time order, and whether a stop request ended it early."""

    session: store.Session
    events: list[Event]
    stopped: bool


# ----------------------------------------------------------------------------- sessions


def monitor(
    source: str | Source = "mic",
    *,
    db: str | os.PathLike = "respira.sqlite",
    model: str = "cough",
    settings: Mapping[str, Any] | None = None,
    keep_snippets: bool = False,
    name: str | None = None,
    device: str = "cpu",
    on_event: OnEvent | None = None,
    log: Callable[[str], None] | None = None,
) -> MonitorResult:
    """Listen to `source` (a Source, or "mic", "stdin", "-" or an audio file) with `model` (a
    built-in name or a bundle path) and store every event in the SQLite database `db` (created
    when missing) the moment it is final, in a new session named `name` (default: the start time).

    settings: DetectConfig keys over the model's decision threshold (`detect_settings` reads them
    from FILE.yaml and `--set`); live input is read in blocks of LIVE_BLOCK_S unless they set
    block_s. keep_snippets: store each event's audio. on_event(event, wall_time): each event as it
    is stored; log(text): sessions found interrupted, and the session started. Ctrl-C or SIGTERM
    (in the main thread) end the session cleanly. Returns the closed session and its events.
    """
    from respira.inference import load_model

    source = source if isinstance(source, Source) else Source.parse(source)
    scorer = load_model(model, device=device)
    check_scorer(scorer)
    cfg = MonitorConfig(detect=detect_config(scorer, settings, block_s=source.block_s), keep_snippets=keep_snippets)
    say = log or (lambda text: None)
    with closing(store.connect(db)) as con, stop_on_signals() as stop:
        for s in store.mark_interrupted(con):
            say(f"session {s.id} '{s.name}' was interrupted after {s.seconds_analysed / 3600:.3f} h "
                f"({s.events} events kept; last progress {s.updated_at})")
        blocks, info = source.open(sample_rate=scorer.sample_rate, block_s=cfg.detect.block_s, stop=stop)
        session = new_session(con, scorer, cfg, source=source.name, model=model, name=name, source_info=info)
        say(f"session {session.id} '{session.name}': {source.name} -> {db} (model {model}, "
            f"threshold {cfg.detect.threshold:g}); Ctrl-C to stop")
        return monitor_stream(background(blocks, stop), scorer, con, session, cfg, live=source.live, stop=stop,
                              on_event=on_event)


def new_session(con: sqlite3.Connection, scorer: Scorer, cfg: MonitorConfig, *, source: str, model: str,
                name: str | None = None, source_info: dict | None = None) -> store.Session:
    """Start a running session for `source` ("mic", "stdin" or a file path) analysed with `scorer`
    (named `model`); params hold the settings, the window length and `source_info`."""
    name = name or datetime.now().strftime("%Y-%m-%d_%H%M%S")
    if name.isdigit() or name == "latest":
        raise ConfigError(f"--session-name {name!r} would be read as an id or `latest`; choose a name with a letter")
    params = {"monitor": cfg.to_dict(), "window_s": float(cfg.detect.window_s or scorer.clip_s),
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
    on_event: OnEvent | None = None,
) -> MonitorResult:
    """Detect in `blocks` (mono float32 at scorer.sample_rate, in order) and store into `session`
    with a `SessionWriter`. `stop` set: no further block is read. At the end the session is closed
    (`finished`; on an error from the blocks it is closed as `interrupted` and the error propagates).
    """
    writer = SessionWriter(scorer, con, session, cfg, live=live, on_event=on_event)
    stopped = False
    try:
        for block in blocks:
            if stop is not None and stop.is_set():
                stopped = True
                break
            writer.feed(block)
        stopped = stopped or (stop is not None and stop.is_set())
    except BaseException:
        writer.abort()
        raise
    return MonitorResult(writer.close(), writer.events, stopped)


class SessionWriter:
    """A session's detector and store, fed block by block (`monitor_stream` pulls the blocks; the
    server's live page pushes them).

    `feed` inserts and commits each event as soon as the detector releases it, then passes it to
    `on_event(event, wall_time)`, and updates the progress (seconds analysed, seconds active).
    `live`: the blocks are real-time audio, so events get a wall_time (the session start + their
    start). `close` flushes the last events and ends the session; `abort` ends it without a flush.
    `events`: every event stored so far, in time order.
    """

    def __init__(self, scorer: Scorer, con: sqlite3.Connection, session: store.Session,
                 cfg: MonitorConfig = MonitorConfig(), *, live: bool = True, on_event: OnEvent | None = None) -> None:
        self.detector = StreamDetector(scorer, cfg.detect, file=session.source)
        self.con, self.session, self.cfg, self.on_event = con, session, cfg, on_event
        sr = self.detector.sample_rate
        self._recent = _History(seconds=cfg.history_s + cfg.detect.block_s, sr=sr) if cfg.keep_snippets else None
        self._origin = datetime.fromisoformat(session.started_at) if live else None
        self.events: list[Event] = []

    @property
    def seconds(self) -> float:
        """Seconds of audio fed so far."""
        return self.detector.state.samples / self.detector.sample_rate

    def feed(self, block: np.ndarray) -> None:
        """Detect in the next block (mono float32 at the scorer's rate) and store what it makes final."""
        block = np.asarray(block, dtype=np.float32)
        if self._recent is not None:
            self._recent.add(block)
        self._record(self.detector.feed(block))
        store.update_progress(self.con, self.session.id, seconds_analysed=self.seconds,
                              seconds_active=self.detector.active_s)

    def close(self, status: str = "finished") -> store.Session:
        """Flush the detector's last events and end the session with `status`; the closed session."""
        result = self.detector.finish()
        self._record(result.events[self.detector.released:])
        return store.end_session(self.con, self.session.id, seconds_analysed=result.duration_s,
                                 seconds_active=result.active_s, status=status)

    def abort(self) -> store.Session:
        """End the session as `interrupted` with what was stored (after a failure of the input)."""
        return store.end_session(self.con, self.session.id, seconds_analysed=self.seconds,
                                 seconds_active=self.detector.active_s, status="interrupted")

    def _record(self, events: Iterable[Event]) -> None:
        pad, origin = self.cfg.snippet_pad_s, self._origin
        for e in events:
            wall = (origin + timedelta(seconds=e.start)).isoformat(timespec="milliseconds") if origin else None
            snippet = self._recent.wav(e.start - pad, e.end + pad) if self._recent else None
            store.add_event(self.con, self.session.id, e, wall_time=wall, snippet=snippet)
            self.events.append(e)
            if self.on_event is not None:
                self.on_event(e, wall)


# ----------------------------------------------------------------------------- reports


def session_report(con: sqlite3.Connection, session: store.Session, out: str | os.PathLike) -> dict:
    """Write the night report of a stored session into OUT as `respira detect` writes its own
    (`respira.detect.job.write_night`: events.csv, candidates.csv (the same events: only those are
    stored), events.json, label tracks, timeline, summary.json, report.html, and params.json: the
    session's settings); returns the summary: respira.detect.night_report.summary's keys (coughs, bouts,
    coughs_per_hour, hours_analysed, hours_active, ...) plus `session` (the session row). No window
    scores are stored, so the timeline shows the events and their counts per bin."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = _detect_config(session)
    events = [e.to_event(session.source) for e in store.events(con, session.id)]
    result = FileResult(session.source, tuple(events), np.zeros(0, np.float16), cfg.hop_s,
                        float(session.params.get("window_s", 1.0)), session.seconds_analysed, session.seconds_active,
                        session.threshold)
    info = summary([result], model=session.model, cfg=cfg) | {"session": session.to_dict()}
    write_night([result], out, info=info, params=session.params)
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


callable_module(__name__, monitor)
