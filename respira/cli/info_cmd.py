"""`respira info FILE...`: duration, rate, channels, format and quality warnings of audio files."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from respira.cli.app import app, console, err_console


@app.command("info")
def info_command(
    files: list[Path] = typer.Argument(..., help="Audio files to describe.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Describe audio files; a damaged one by what decodes (a "damaged: recovered ..." warning on its
    line), a file with no decodable audio by one line on stderr and exit code 1."""
    from respira import audio
    from respira.display import failure_lines, infos_json, infos_table

    infos, failures = audio.read_infos(files)
    if failures:
        err_console.print(failure_lines(failures), markup=False, highlight=False, soft_wrap=True)
    if as_json:
        print(json.dumps(infos_json(infos, failures)))
    elif infos:
        console.print(infos_table(infos))
    if failures:
        raise typer.Exit(1)
