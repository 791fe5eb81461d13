"""`respira monitor` (live or batch input -> events in SQLite as they are found) and `respira report` (a stored session -> night report)."""

from __future__ import annotations

from pathlib import Path

import typer

from respira.cli.app import app, console, err_console

_LIVE_BLOCK_S = 0.5  # seconds per block read from live input (events come out about 2-4 s after they end)


@app.command("monitor")
def monitor_cmd(
    src: str = typer.Option("mic", "--input", "-i", help="mic, stdin (raw PCM or WAV from a pipe, also '-') or an audio FILE."),
    model: str = typer.Option("cough", "--model", "-m", help="Built-in model name or bundle path."),
    db: Path = typer.Option(Path("respira.sqlite"), "--db", help="SQLite database for sessions and events (created when missing)."),
    sr: int = typer.Option(16000, "--sr", help="Sample rate of raw PCM input (stdin, a growing raw file) and of the microphone."),
    pcm_format: str = typer.Option("s16le", "--format", help="Raw PCM sample format: s16le, s24le, s32le or f32le (mono); a WAV header overrides it."),
    follow: bool = typer.Option(False, "--follow", help="FILE is being written: keep reading as it grows, stop after --idle seconds without growth."),
    idle: float = typer.Option(10.0, "--idle", help="With --follow: seconds without growth that end the session."),
    keep_snippets: bool = typer.Option(False, "--keep-snippets", help="Store each event's audio (16-bit WAV, 0.25 s around it); otherwise no audio is stored."),
    session_name: str | None = typer.Option(None, "--session-name", help="Name of the session (default: the start time)."),
    threshold: float | None = typer.Option(None, "--threshold", help="Event score threshold (default: the model's decision threshold)."),
    device: str = typer.Option("cpu", help="Torch device for the model: cpu, cuda, cuda:N."),
) -> None:  # fmt: skip
    """Listen for coughs and store every event in DB the moment it is final, printing it too.

    Ctrl-C or SIGTERM ends the session cleanly; after a hard kill, what was stored is kept and
    the session shows as interrupted. `respira report latest -o OUT` writes its night report.
    """
    from contextlib import closing

    from respira import audio, store
    from respira.detect.config import DetectConfig
    from respira.errors import ConfigError
    from respira.inference import load_model
    from respira.monitor import MonitorConfig, PcmFormat, background, monitor_stream, new_session
    from respira.signals import stop_on_signals

    kind = "stdin" if src in ("stdin", "-") else "mic" if src == "mic" else "follow" if follow else "file"
    if follow and kind != "follow":
        raise ConfigError("--follow needs --input FILE (a file being written)")
    if threshold is not None and not 0 <= threshold <= 1:
        raise ConfigError(f"--threshold must be in [0, 1], got {threshold}")
    if idle <= 0:
        raise ConfigError(f"--idle must be > 0 seconds, got {idle}")
    if kind in ("file", "follow") and not Path(src).is_file():
        raise ConfigError(f"--input {src}: no such file (use mic, stdin or an audio file)")
    if kind == "file":
        audio.info(src, check=False)  # an unreadable file fails here, before a session is made
    raw = PcmFormat(pcm_format, sr)
    scorer = load_model(model, device=device)
    chosen = threshold if threshold is not None else float(scorer.meta.thresholds.get("decision", 0.5))
    block_s = _LIVE_BLOCK_S if kind != "file" else DetectConfig().block_s
    cfg = MonitorConfig(detect=DetectConfig(threshold=chosen, block_s=block_s), keep_snippets=keep_snippets)

    with closing(store.connect(db)) as con, stop_on_signals() as stop:
        for s in store.mark_interrupted(con):
            err_console.print(f"session {s.id} '{s.name}' was interrupted after {s.seconds_analysed / 3600:.3f} h "
                              f"({s.events} events kept; last progress {s.updated_at})", markup=False, highlight=False)
        blocks, info = _open_input(kind, src, raw=raw, sr=scorer.sample_rate, block_s=block_s, idle_s=idle, stop=stop)
        source = kind if kind in ("mic", "stdin") else src
        session = new_session(con, scorer, cfg, source=source, model=model, name=session_name, source_info=info)
        err_console.print(f"session {session.id} '{session.name}': {source} -> {db} (model {model}, threshold {chosen:g}); "
                          f"Ctrl-C to stop", markup=False, highlight=False, soft_wrap=True)
        result = monitor_stream(background(blocks, stop), scorer, con, session, cfg, live=kind != "file", stop=stop,
                                on_event=_show)
    s = result.session
    console.print(f"session {s.id} '{s.name}' {'stopped' if result.stopped else 'finished'}: {s.events} events in "
                  f"{s.seconds_analysed / 3600:.3f} h analysed; report: respira report {s.id} --db {db} -o OUT",
                  markup=False, highlight=False, soft_wrap=True)


def _open_input(kind: str, src: str, *, raw, sr: int, block_s: float, idle_s: float, stop) -> tuple:
    """(blocks at `sr`, what the session records about its input) for --input kind mic, stdin, follow or file."""
    import sys

    from respira import audio
    from respira.monitor import GrowingFile, mic_blocks, open_pcm

    if kind == "mic":
        return mic_blocks(sr=sr, block_s=block_s, input_sr=raw.sr), {"kind": "mic", "sample_rate": raw.sr}
    if kind == "file":
        return audio.stream(src, sr=sr, block_s=block_s), {"kind": "file"}
    # stdin unbuffered: the reading thread then holds no lock that would block the interpreter's exit
    f = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False) if kind == "stdin" else GrowingFile(src, idle_s=idle_s, stop=stop)
    fmt, blocks = open_pcm(f, fmt=raw, sr=sr, block_s=block_s)
    return blocks, {"kind": kind, "format": fmt.encoding, "sample_rate": fmt.sr, "channels": fmt.channels}


def _show(e, wall: str | None) -> None:
    """One line per event as it is stored: start-end s, label, score, and the wall clock for live input."""
    when = f"  {wall[:23].replace('T', ' ')}" if wall else ""
    console.print(f"{e.start:10.3f}-{e.end:.3f} s  {e.label}  {e.score:.3f}{when}", markup=False, highlight=False)


@app.command("report")
def report_cmd(
    session: str = typer.Argument("latest", help="Session id, name, or 'latest'."),
    db: Path = typer.Option(Path("respira.sqlite"), "--db", help="The monitor's SQLite database."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder for summary.json, events.csv and report.html."),
    list_sessions: bool = typer.Option(False, "--list", help="List the sessions in DB instead."),
) -> None:  # fmt: skip
    """The night report of a monitoring session: OUT/summary.json, events.csv and report.html."""
    from contextlib import closing

    from rich.markup import escape
    from rich.table import Table

    from respira import store
    from respira.errors import ConfigError
    from respira.monitor import session_report

    with closing(store.connect(db, create=False)) as con:
        store.mark_interrupted(con)
        if list_sessions:
            table = Table("id", "name", "status", "started", "hours", "events", "source", title=f"sessions in {escape(str(db))}")
            for s in store.sessions(con):
                table.add_row(str(s.id), escape(s.name), s.status, s.started_at[:19].replace("T", " "),
                              f"{s.seconds_analysed / 3600:.3f}", str(s.events), escape(s.source))
            console.print(table)
            return
        if out is None:
            raise ConfigError("respira report needs -o OUT (or --list)")
        found = store.find_session(con, session)
        info = session_report(con, found, out)
        console.print(f"session {found.id} '{found.name}' ({found.status}): {info['coughs']} coughs in {info['bouts']} bouts, "
                      f"{info['coughs_per_hour']:.1f} per hour over {info['hours_analysed']:.2f} h; report: {out / 'report.html'}",
                      markup=False, highlight=False, soft_wrap=True)
