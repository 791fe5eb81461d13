"""`respira info FILE...`: duration, rate, channels, format and quality warnings of audio files."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from respira.cli.app import app, console, err_console
from respira.errors import RespiraError


@app.command("info")
def info_command(
    files: list[Path] = typer.Argument(..., help="Audio files to describe.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Describe audio files; a file that cannot be read gets one line on stderr and exit code 1."""
    from rich.markup import escape
    from rich.table import Table

    from respira import audio

    rows, errors = [], []
    for path in files:
        try:
            rows.append(audio.info(path))
        except RespiraError as e:
            errors.append({"path": str(path), "error": str(e)})
            err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)

    if as_json:
        keys = ("path", "duration_s", "sample_rate", "channels", "format")
        out = {
            "files": [{**{k: getattr(r, k) for k in keys}, "warnings": list(r.warnings)} for r in rows],
            "errors": errors,
        }
        print(json.dumps(out))
    elif rows:
        table = Table("file", "duration", "rate", "ch", "format", "warnings")
        table.columns[0].overflow = "fold"
        for r in rows:
            table.add_row(
                escape(r.path),
                f"{r.duration_s:.2f} s",
                f"{r.sample_rate} Hz",
                str(r.channels),
                r.format,
                ", ".join(r.warnings) or "-",
                style="yellow" if r.warnings else None,
            )
        console.print(table)
    if errors:
        raise typer.Exit(1)
