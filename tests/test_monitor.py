"""Monitoring into SQLite: events released while streaming equal the final ones, planted coughs land
in the database at their times, snippets only on request, a growing file is followed, the night
report is built from the database, and a killed monitor loses nothing it reported."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import wave
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from detect_stub import PlantedScorer
from tiny_models import tiny_bundle

from respira import store
from respira.audio import PcmFormat, open_pcm
from respira.detect import DetectConfig, StreamDetector, detect_array, group_bouts
from respira.errors import AudioError, DataError
from respira.monitor import MonitorConfig, monitor_stream, new_session, session_report
from respira.sources import GrowingFile, mic_blocks
from respira.testing import scene

SR = 16000
_EVENT_LINE = re.compile(r"^\s*(\d+\.\d{3})-(\d+\.\d{3}) s  (\S+)  (\d\.\d{3})")


def _blocks(y: np.ndarray, seconds: float):
    size = round(seconds * SR)
    return [y[i: i + size] for i in range(0, len(y), size)]


def _s16(y: np.ndarray) -> np.ndarray:
    """y as the 16-bit samples a pipe carries, and back: int16 [samples]."""
    return np.round(np.clip(y, -1, 1) * 32767).astype("<i2")


@pytest.fixture(scope="module")
def recording() -> tuple[np.ndarray, list]:
    """40 s with 6 planted coughs and 2 speech bursts (16 kHz)."""
    return scene(duration_s=40.0, events={"cough": 6, "speech": 2}, seed=11)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("model") / "tiny.respira")


def _run_stub(db: Path, y, planted, *, progress: list | None = None, **cfg_kwargs):
    """monitor_stream over y in 0.5 s blocks with the stub scorer; `progress` gets the session row
    as stored before each block is handed over (so after the previous one)."""
    con = store.connect(db)
    scorer = PlantedScorer(y, planted)
    cfg = MonitorConfig(**cfg_kwargs)
    session = new_session(con, scorer, cfg, source="stdin", model="stub", name="night")
    shown = []

    def blocks():
        for block in _blocks(y, 0.5):
            if progress is not None:
                progress.append(store.session_by_id(con, session.id))
            yield block

    result = monitor_stream(blocks(), scorer, con, session, cfg, on_event=lambda e, wall: shown.append((e, wall)))
    return con, result, shown


# --- the detector releases events early ---------------------------------------------------------


@pytest.mark.parametrize("block_s", [0.1, 0.5, 7.0])
def test_events_released_while_streaming_are_exactly_finish_events(recording, block_s):
    y, planted = recording
    scorer = PlantedScorer(y, planted)
    for threshold in (0.0, 0.5):  # 0: every burst (speech too) is an event
        detector = StreamDetector(scorer, DetectConfig(threshold=threshold, block_s=block_s))
        early, lag = [], []
        for i, block in enumerate(_blocks(y, block_s)):
            got = detector.feed(block)
            early += got
            lag += [(i + 1) * block_s - e.end for e in got]
        result = detector.finish()
        assert early == result.events[: len(early)] and detector.released == len(early)
        assert len(result.events) - len(early) <= 1  # only a burst in the last seconds waits for the end
        assert len(early) >= (6 if threshold else 8)
        assert max(lag) < 4.0 + block_s  # out a few seconds after the sound ended
        assert result.events == detect_array(y, scorer, DetectConfig(threshold=threshold)).events


# --- the Python API with the stub scorer --------------------------------------------------------


def test_monitor_stream_stores_planted_coughs_at_their_times(recording, tmp_path):
    y, planted = recording
    progress: list = []
    con, result, shown = _run_stub(tmp_path / "m.sqlite", y, planted, progress=progress)
    coughs = [p for p in planted if p.label == "cough"]
    rows = store.events(con, result.session.id)
    assert len(rows) == len(coughs) == 6
    for row, p in zip(rows, coughs):
        assert abs(row.start_s - p.start) <= 0.03 and p.start < row.end_s <= p.end + 0.02
        assert row.label == "cough" and row.score == pytest.approx(1.0) and row.snippet is None  # no audio by default
    assert [e for e, _ in shown] == result.events == [r.to_event("stdin") for r in rows]
    s = result.session
    assert (s.status, s.name, s.events, s.model, s.threshold, s.sample_rate) == ("finished", "night", 6, "stub", 0.5, SR)
    assert s.seconds_analysed == pytest.approx(40.0) and 0 < s.seconds_active < 20 and s.ended_at >= s.started_at
    assert s.params["monitor"]["detect"]["block_s"] == 0.5 and s.params["window_s"] == 1.0
    assert [p.seconds_analysed for p in progress] == [0.5 * i for i in range(80)]  # stored after every block
    assert all(p.status == "running" and p.ended_at is None for p in progress)
    assert progress[-1].seconds_active == pytest.approx(s.seconds_active, abs=0.6)  # the gate's time, known as it goes
    assert [p.events for p in progress][-1] >= 5  # events were stored while the audio was still coming
    start = datetime.fromisoformat(s.started_at)
    for row in rows:  # live input: the wall clock of each cough
        offset = (datetime.fromisoformat(row.wall_time) - start).total_seconds()
        assert offset == pytest.approx(row.start_s, abs=1e-3)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal" and con.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert con.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION


def test_keep_snippets_stores_the_audio_of_each_event_only(recording, tmp_path):
    y, planted = recording
    con, result, _ = _run_stub(tmp_path / "m.sqlite", y, planted, keep_snippets=True)
    rows = store.events(con, result.session.id)
    assert len(rows) == 6
    for row in rows:
        clip, sr = sf.read(io.BytesIO(row.snippet), dtype="float32")
        assert sf.info(io.BytesIO(row.snippet)).subtype == "PCM_16" and sr == SR
        a = round((row.start_s - 0.25) * SR)
        assert len(clip) == round((row.end_s + 0.25) * SR) - a
        assert np.allclose(clip, y[a: a + len(clip)], atol=1 / 32767)
    blobs = con.execute("SELECT count(*) FROM events WHERE snippet IS NOT NULL").fetchone()[0]
    assert blobs == 6 and [c["name"] for c in con.execute("PRAGMA table_info(sessions)") if c["type"] == "BLOB"] == []


def test_a_growing_wav_is_followed_until_it_stops_growing(recording, tmp_path):
    y, planted = recording
    pcm = _s16(y)
    path = tmp_path / "rec.wav"
    with wave.open(str(path), "wb") as w:  # the recorder has written a header and the first 5 s
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm[: 5 * SR].tobytes())
    heard = pcm.astype(np.float32) / 32768
    scorer = PlantedScorer(heard, planted)
    con = store.connect(tmp_path / "m.sqlite")
    cfg = MonitorConfig()
    session = new_session(con, scorer, cfg, source=str(path), model="stub")
    growing = GrowingFile(path, idle_s=1.0, poll_s=0.02)
    fmt, blocks = open_pcm(growing, fmt=PcmFormat("f32le", 8000), sample_rate=SR, block_s=0.5)
    assert fmt == PcmFormat("s16le", SR, 1)  # the header wins over the flags
    done = {}
    reader = threading.Thread(target=lambda: done.update(r=monitor_stream(blocks, scorer, con, session, cfg)))
    reader.start()
    with open(path, "ab") as f:  # ... and keeps appending; the header's sizes are never updated
        for piece in np.array_split(pcm[5 * SR:], 5):
            time.sleep(0.15)
            f.write(piece.tobytes())
            f.flush()
    reader.join(timeout=20)
    growing.close()
    result = done["r"]
    assert result.session.source == str(path)
    assert result.session.seconds_analysed == pytest.approx(40.0) and result.session.status == "finished"
    assert result.events == detect_array(heard, scorer, DetectConfig(), file=str(path)).events and len(result.events) == 6


def test_report_from_the_database(recording, tmp_path, capsys):
    y, planted = recording
    db = tmp_path / "m.sqlite"
    con, result, _ = _run_stub(db, y, planted)
    info = session_report(con, result.session, tmp_path / "direct")
    code, out, _ = _cli(capsys, "report", "latest", "--db", str(db), "-o", str(tmp_path / "out"))
    assert code == 0 and "6 coughs" in out
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s == json.loads(json.dumps(info))
    bouts = len(group_bouts(result.events, gap_s=DetectConfig().bout_gap_s))
    assert (s["coughs"], s["bouts"], s["hours_analysed"]) == (6, bouts, round(40 / 3600, 4))
    assert s["coughs_per_hour"] == pytest.approx(6 / (40 / 3600), abs=0.01) and 0 < s["hours_active"] < 40 / 3600
    assert s["session"]["name"] == "night" and s["session"]["status"] == "finished"
    with open(tmp_path / "out" / "events.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["start"]) for r in rows] == [round(e.start, 3) for e in result.events]
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 1 and f"{result.events[0].start:.3f}" in html
    for ref in ("night", str(result.session.id)):
        assert store.find_session(con, ref).id == result.session.id
    code, out, _ = _cli(capsys, "report", "--list", "--db", str(db))
    assert code == 0 and "night" in out and "finished" in out
    code, _, err = _cli(capsys, "report", "nope", "--db", str(db), "-o", str(tmp_path / "x"))
    assert code == 2 and "no session 'nope'" in err


# --- input formats, devices, the database file --------------------------------------------------


def test_raw_and_wav_pcm_streams_decode_to_the_same_samples(tmp_path):
    rng = np.random.default_rng(0)
    y = (rng.uniform(-0.5, 0.5, 4000)).astype(np.float32)

    def read(data: bytes, fmt: PcmFormat, sr: int = 8000):
        got_fmt, blocks = open_pcm(io.BytesIO(data), fmt=fmt, sample_rate=sr, block_s=0.1)
        return got_fmt, np.concatenate(list(blocks))

    assert np.array_equal(read(y.tobytes(), PcmFormat("f32le", 8000))[1], y)
    fmt, got = read(_s16(y).tobytes(), PcmFormat("s16le", 8000))
    assert fmt.encoding == "s16le" and np.allclose(got, y, atol=1 / 32767)
    stereo = np.stack([y, -y / 2], axis=1)
    for subtype in ("PCM_16", "PCM_24", "PCM_32", "FLOAT"):
        buf = io.BytesIO()
        sf.write(buf, stereo, 8000, format="WAV", subtype=subtype)
        fmt, got = read(buf.getvalue(), PcmFormat("s16le", 16000))
        assert (fmt.sample_rate, fmt.channels) == (8000, 2)
        assert np.allclose(got, sf.read(io.BytesIO(buf.getvalue()), dtype="float32")[0].mean(axis=1), atol=1e-6)
    fmt, up = read(y.tobytes(), PcmFormat("f32le", 8000), sr=16000)
    assert abs(len(up) - 8000) <= 1  # resampled to the model's rate
    with pytest.raises(AudioError, match="not a WAV stream"):
        open_pcm(io.BytesIO(b"RIFF\0\0\0\0AVI LIST"), fmt=PcmFormat(), sample_rate=SR, block_s=0.5)


class _FakeSoundDevice:
    """sounddevice with one input device (recording `tone` in blocks) or none."""

    def __init__(self, tone: np.ndarray | None) -> None:
        self.tone = tone

    def check_input_settings(self, *, samplerate, channels, dtype):
        if self.tone is None:
            raise RuntimeError("Error querying device -1")

    def InputStream(self, *, samplerate, channels, dtype, blocksize, callback):  # noqa: N802 - sounddevice's name
        tone = self.tone

        class Stream:
            def __enter__(self):
                for i in range(0, len(tone), blocksize):
                    callback(tone[i: i + blocksize, None], blocksize, None, None)

            def __exit__(self, *exc):
                return False

        return Stream()


def test_microphone_blocks_and_a_clear_error_without_one(monkeypatch):
    import itertools

    tone = np.sin(np.arange(48000) * 2 * np.pi * 440 / 48000).astype(np.float32) * 0.5
    monkeypatch.setitem(sys.modules, "sounddevice", _FakeSoundDevice(tone))
    got = np.concatenate(list(itertools.islice(mic_blocks(sample_rate=SR, block_s=0.25, input_sample_rate=48000), 3)))
    assert len(got) >= 8000 and np.abs(got[2000:8000]).max() == pytest.approx(0.5, abs=0.01)  # resampled to 16 kHz
    monkeypatch.setitem(sys.modules, "sounddevice", _FakeSoundDevice(None))
    with pytest.raises(AudioError, match="no sound input device found; use --input stdin with ffmpeg"):
        mic_blocks(sample_rate=SR, block_s=0.5)
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    with pytest.raises(AudioError, match="no sound input device found.*respira\\[live\\]"):
        mic_blocks(sample_rate=SR, block_s=0.5)


def test_database_that_is_not_ours_is_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)")
    with pytest.raises(DataError, match="not a respira monitor database"):
        store.connect(other)
    (tmp_path / "text.sqlite").write_text("hello " * 100)
    with pytest.raises(DataError, match="not a respira monitor database"):
        store.connect(tmp_path / "text.sqlite")
    newer = tmp_path / "newer.sqlite"
    store.connect(newer).execute("PRAGMA user_version = 99")
    with pytest.raises(DataError, match="newer"):
        store.connect(newer)
    with pytest.raises(DataError, match="no monitor database"):
        store.connect(tmp_path / "missing.sqlite", create=False)


# --- the CLI ------------------------------------------------------------------------------------


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from respira.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def _monitor(*args: str, **kwargs) -> subprocess.Popen:
    code = "from respira.cli import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, "monitor", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **kwargs)


def _printed(stdout: bytes) -> list[tuple[float, float]]:
    return [(float(m[1]), float(m[2])) for m in map(_EVENT_LINE.match, stdout.decode().splitlines()) if m]


def test_cli_monitor_on_stdin_stores_what_the_python_api_finds(recording, bundle, tmp_path):
    from respira.inference import load_model

    y, planted = recording
    pcm = _s16(y[: 20 * SR])
    db = tmp_path / "m.sqlite"
    proc = _monitor("--input", "stdin", "--model", str(bundle), "--db", str(db), "--threshold", "0", "--session-name", "pipe",
                    stdin=subprocess.PIPE)
    out, err = proc.communicate(pcm.tobytes(), timeout=120)
    assert proc.returncode == 0, err.decode()
    expected = detect_array(pcm.astype(np.float32) / 32768, load_model(bundle), DetectConfig(threshold=0.0)).events
    con = store.connect(db, create=False)
    session = store.find_session(con, "latest")
    rows = store.events(con, session.id)
    assert (session.name, session.status, session.source, session.seconds_analysed) == ("pipe", "finished", "stdin", 20.0)
    assert len(rows) == len(expected) >= sum(p.start < 19 for p in planted)  # threshold 0: every burst, whatever the model says
    assert [(r.start_s, r.end_s, r.score) for r in rows] == [(e.start, e.end, pytest.approx(e.score, abs=1e-5)) for e in expected]
    assert _printed(out) == [(round(r.start_s, 3), round(r.end_s, 3)) for r in rows]
    assert session.params["source"] == {"kind": "stdin", "format": "s16le", "sample_rate": SR, "channels": 1}


def test_cli_monitor_rejects_bad_input_in_one_line(bundle, tmp_path, capsys):
    code, _, err = _cli(capsys, "monitor", "--input", "stdin", "--follow", "--model", str(bundle), "--db", str(tmp_path / "d"))
    assert code == 2 and "--follow needs --input FILE" in err
    code, _, err = _cli(capsys, "monitor", "--input", str(tmp_path / "gone.wav"), "--db", str(tmp_path / "d"))
    assert code == 2 and "no such file" in err
    code, _, err = _cli(capsys, "monitor", "--input", "stdin", "--format", "u8", "--db", str(tmp_path / "d"))
    assert code == 2 and "unknown PCM format 'u8'" in err and "Traceback" not in err


_FEEDER = """
import sys, time
data = open(sys.argv[1], "rb").read()
for i in range(0, len(data), 8000):  # 0.25 s of audio every 0.05 s
    sys.stdout.buffer.write(data[i:i + 8000])
    sys.stdout.buffer.flush()
    time.sleep(0.05)
"""


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_monitor_keeps_every_event_it_reported(recording, bundle, tmp_path, capsys, how):
    y, _ = recording
    raw = tmp_path / "night.raw"
    raw.write_bytes(_s16(y).tobytes())
    db = tmp_path / "m.sqlite"
    feeder = subprocess.Popen([sys.executable, "-c", _FEEDER, str(raw)], stdout=subprocess.PIPE)
    monitor = _monitor("--input", "stdin", "--model", str(bundle), "--db", str(db), "--threshold", "0", stdin=feeder.stdout)
    feeder.stdout.close()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and monitor.poll() is None:
            try:
                with sqlite3.connect(db) as poll:
                    if poll.execute("SELECT count(*) FROM events").fetchone()[0] >= 1:
                        break
            except sqlite3.OperationalError:  # not created yet
                pass
            time.sleep(0.05)
        assert monitor.poll() is None, "the monitor ended before it could be stopped"
        monitor.send_signal(getattr(signal, how))
        out, err = monitor.communicate(timeout=30)  # also reaps it, so its pid is gone
    finally:
        feeder.kill()
        feeder.wait()
        monitor.kill()
    con = store.connect(db, create=False)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = [(round(r.start_s, 3), round(r.end_s, 3)) for r in store.events(con, 1)]
    printed = _printed(out)
    assert printed and set(printed) <= set(stored)
    session = store.session_by_id(con, 1)
    assert 0 < session.seconds_analysed < 40
    if how == "SIGKILL":
        assert monitor.returncode == -signal.SIGKILL and session.status == "running" and session.ended_at is None
        wav = tmp_path / "short.wav"
        sf.write(wav, y[: 8 * SR], SR, subtype="PCM_16")
        code, _, err = _cli(capsys, "monitor", "--input", str(wav), "--model", str(bundle), "--db", str(db), "--threshold", "0")
        assert code == 0 and f"session 1 '{session.name}' was interrupted" in err  # said on the next start
        batch = store.session_by_id(con, 2)  # a whole file as a session: no wall clock
        assert (batch.status, batch.source, batch.seconds_analysed) == ("finished", str(wav), 8.0)
        assert batch.events >= 1 and all(e.wall_time is None for e in store.events(con, 2))
        code, listing, _ = _cli(capsys, "report", "--list", "--db", str(db))
        assert code == 0 and "interrupted" in listing
        assert store.session_by_id(con, 1).status == "interrupted"
    else:  # a clean stop: the session is closed, its last events flushed
        assert monitor.returncode == 0, err.decode()
        assert session.status == "finished" and session.ended_at and "stopped" in out.decode()
        assert printed == stored
    code, _, _ = _cli(capsys, "report", "1", "--db", str(db), "-o", str(tmp_path / "out"))
    assert code == 0 and json.loads((tmp_path / "out" / "summary.json").read_text())["coughs"] == len(stored)
