"""`respira data import` and `respira data summary`: data sets -> manifests, and what a manifest holds."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from respira.cli.app import console, data_app, err_console

# Kept in step with respira.data.IMPORTERS by a test; listed here so `--help` needs no pandas.
FORMATS = (
    "folder", "csv", "nonverbal", "vocalsound", "esc50", "covid19-cough", "covid19-cough-uncut",
    "coughvid", "coswara", "virufy", "icbhi",
)  # fmt: skip
_PROGRESS_FROM = 20  # files; fewer are read without a progress bar
_MAX_LISTED = 20  # warnings / unreadable files printed before "... and N more"


@data_app.command("import")
def import_cmd(
    fmt: str = typer.Argument(..., metavar="FORMAT", help=f"Data set layout: {', '.join(FORMATS)}."),
    src: Path = typer.Argument(..., metavar="SRC", help="The data set's folder (the CSV file for format csv)."),
    out: Path = typer.Option(..., "--out", "-o", help="Manifest to write (.csv or .jsonl)."),
    split: bool = typer.Option(True, "--split/--no-split", help="Fill empty splits: subject-disjoint train/val/test."),
    seed: int = typer.Option(0, help="Seed of that split."),
    val: float = typer.Option(0.15, help="Fraction of rows for val."),
    test: float = typer.Option(0.15, help="Fraction of rows for test."),
    subject_regex: str | None = typer.Option(
        None, help="Format folder: regex; its first group in a file name is the subject."
    ),
    option: list[str] = typer.Option(
        [], "--option", "-O", help="Importer option KEY=VALUE, e.g. -O sounds=cough (coswara)."
    ),
    sides: Path | None = typer.Option(
        None, metavar="DIR", help="Format covid19-cough-uncut: write each call's caller / operator side as mono "
        "FLAC under DIR/caller, DIR/operator; rows: the caller's cough, the operator's side as speech.",
    ),
) -> None:
    """Import a public data set (or your own folder / CSV) into a manifest; prints a short summary."""
    from respira.data import import_dataset, split_by_subject, write_manifest
    from respira.errors import DataError

    opts = _parse_options(option)
    if subject_regex is not None:
        opts["subject_regex"] = subject_regex
    if sides is not None:
        if fmt != "covid19-cough-uncut":
            raise DataError(f"--sides splits the two-channel calls of covid19-cough-uncut; format {fmt} has none")
        opts["sides"] = sides
    with _warnings_to_stderr():
        df = import_dataset(fmt, src, **opts)
        if split:
            df = split_by_subject(df, val=val, test=test, seed=seed)
    write_manifest(df, out)
    labels = df["label"].value_counts()
    lines = [
        f"wrote {out}: {len(df)} rows, {len(labels)} labels, {df['subject'].nunique()} subjects",
        "labels: " + ", ".join(f"{k} {v}" for k, v in labels.items()),
    ]
    if split:
        lines.append("splits: " + ", ".join(f"{k} {v}" for k, v in df["split"].value_counts().items()))
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


@data_app.command("summary")
def summary_cmd(
    manifest: Path = typer.Argument(..., metavar="MANIFEST", help="Manifest (.csv or .jsonl)."),
    as_json: bool = typer.Option(False, "--json", help="Also print the summary as one JSON line, last on stdout."),
    no_audio: bool = typer.Option(
        False, "--no-audio", help="Read no audio headers (no durations, no unreadable check)."
    ),
    headers_only: bool = typer.Option(
        False, "--headers-only", help="Read audio headers only: faster, but misses truncated or corrupt data."
    ),
) -> None:
    """Counts per label and split, subjects, total duration, unreadable files and invalid rows of a manifest."""
    from respira.data import read_manifest, summarize

    with _warnings_to_stderr():
        df = read_manifest(manifest, keep_invalid=True)
        many = df["path"].nunique() >= _PROGRESS_FROM
        summary = summarize(df, check_audio=not no_audio, decode=not headers_only, progress=many and not no_audio)
    _print_summary(df, summary)
    for path in summary["unreadable"][:_MAX_LISTED]:
        _err(f"unreadable: {summary['errors'][path]}")
    _print_more(len(summary["unreadable"]), "unreadable files")
    notes = [f"{p}: {w}" for p, ws in summary["warnings"].items() for w in ws]
    for note in notes[:_MAX_LISTED]:
        _err(f"warning: {note}")
    _print_more(len(notes), "warnings")
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))


def _print_summary(df, summary: dict) -> None:
    from respira.display import manifest_table

    console.print(manifest_table(df, splits=list(summary["splits"]), rows=summary["rows"]))
    duration = summary["duration_s"]
    hours = "unknown (--no-audio)" if duration is None else f"{duration:.1f} s ({duration / 3600:.2f} h)"
    console.print(
        f"subjects: {summary['subjects']}   duration: {hours}   unreadable files: {len(summary['unreadable'])}"
        f"   invalid rows: {summary['invalid']}",
        highlight=False,
        soft_wrap=True,
    )


@contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Print DataWarnings raised inside on stderr, one line each (at most _MAX_LISTED)."""
    from respira.data import DataWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            yield
        finally:
            notes = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
            for note in notes[:_MAX_LISTED]:
                _err(f"warning: {note}")
            _print_more(len(notes), "warnings")


def _print_more(n: int, what: str) -> None:
    if n > _MAX_LISTED:
        _err(f"... and {n - _MAX_LISTED} more {what}")


def _err(line: str) -> None:
    err_console.print(line, markup=False, highlight=False, soft_wrap=True)


def _parse_options(pairs: list[str]) -> dict[str, str]:
    from respira.errors import ConfigError

    opts: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option takes KEY=VALUE, got {pair!r}")
        opts[key.strip()] = value.strip()
    return opts
