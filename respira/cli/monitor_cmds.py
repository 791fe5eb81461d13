"""`respira monitor` (live or batch input -> events in SQLite as they are found) and `respira report` (a stored session -> night report)."""

from __future__ import annotations

from pathlib import Path

import typer

from respira.cli.app import app, console, err_console
from respira.cli.detect_cmds import CONFIG_HELP, SET_HELP


@app.command("monitor")
def monitor_cmd(
    src: str = typer.Option("mic", "--input", "-i", help="mic, stdin (raw PCM or WAV from a pipe, also '-') or an audio FILE."),
    model: str = typer.Option("cough", "--model", "-m", help="Built-in model name or bundle path."),
    db: Path = typer.Option(Path("respira.sqlite"), "--db", help="SQLite database for sessions and events (created when missing)."),
    sample_rate: int = typer.Option(16000, "--sample-rate", "--sr", help="Sample rate of raw PCM input (stdin, a growing raw file) and of the microphone."),
    pcm_format: str = typer.Option("s16le", "--format", help="Raw PCM sample format: s16le, s24le, s32le or f32le (mono); a WAV header overrides it."),
    follow: bool = typer.Option(False, "--follow", help="FILE is being written: keep reading as it grows, stop after --idle seconds without growth."),
    idle: float = typer.Option(10.0, "--idle", help="With --follow: seconds without growth that end the session."),
    keep_snippets: bool = typer.Option(False, "--keep-snippets", help="Store each event's audio (16-bit WAV, 0.25 s around it); otherwise no audio is stored."),
    session_name: str | None = typer.Option(None, "--session-name", help="Name of the session (default: the start time)."),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    threshold: float | None = typer.Option(None, "--threshold", help="Event score threshold (default: the model's decision threshold)."),
    device: str = typer.Option("cpu", help="Torch device for the model: cpu, cuda, cuda:N."),
) -> None:  # fmt: skip
    """Listen for coughs and store every event in DB the moment it is final, printing it too.

    Ctrl-C or SIGTERM ends the session cleanly; after a hard kill, what was stored is kept and
    the session shows as interrupted. `respira report latest -o OUT` writes its night report.
    The settings used are stored with the session (and in the report's params.json).
    """
    from respira.audio import PcmFormat
    from respira.detect.config import detect_settings
    from respira.display import event_line
    from respira.monitor import monitor
    from respira.sources import Source

    source = Source.parse(src, follow=follow, pcm=PcmFormat(pcm_format, sample_rate), idle_s=idle)
    settings = detect_settings(config, set_, threshold=threshold)
    result = monitor(source, db=db, model=model, settings=settings, keep_snippets=keep_snippets, name=session_name,
                     device=device, on_event=lambda e, wall: console.print(event_line(e, wall), markup=False, highlight=False),
                     log=lambda text: err_console.print(text, markup=False, highlight=False, soft_wrap=True))
    s = result.session
    console.print(f"session {s.id} '{s.name}' {'stopped' if result.stopped else 'finished'}: {s.events} events in "
                  f"{s.seconds_analysed / 3600:.3f} h analysed; report: respira report {s.id} --db {db} -o OUT",
                  markup=False, highlight=False, soft_wrap=True)


@app.command("report")
def report_cmd(
    session: str = typer.Argument("latest", help="Session id, name, or 'latest'."),
    db: Path = typer.Option(Path("respira.sqlite"), "--db", help="The monitor's SQLite database."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder for the night report (as `respira detect` writes it)."),
    list_sessions: bool = typer.Option(False, "--list", help="List the sessions in DB instead."),
) -> None:  # fmt: skip
    """The night report of a monitoring session: OUT/summary.json, events.csv, report.html, label tracks, params.json."""
    from contextlib import closing

    from respira import store
    from respira.display import sessions_table
    from respira.errors import ConfigError
    from respira.monitor import session_report

    with closing(store.connect(db, create=False)) as con:
        store.mark_interrupted(con)
        if list_sessions:
            console.print(sessions_table(store.sessions(con), db=str(db)))
            return
        if out is None:
            raise ConfigError("respira report needs -o OUT (or --list)")
        found = store.find_session(con, session)
        info = session_report(con, found, out)
        console.print(f"session {found.id} '{found.name}' ({found.status}): {info['coughs']} coughs in {info['bouts']} bouts, "
                      f"{info['coughs_per_hour']:.1f} per hour over {info['hours_analysed']:.2f} h; report: {out / 'report.html'}",
                      markup=False, highlight=False, soft_wrap=True)
