"""The importer registry and the helpers every importer shares."""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from respira.data.manifest import DataWarning
from respira.errors import DataError

Importer = Callable[..., pd.DataFrame]

#: Importer name -> function(src: Path, **options) -> manifest DataFrame.
IMPORTERS: dict[str, Importer] = {}


def register(name: str) -> Callable[[Importer], Importer]:
    """Decorator: add an importer under `name` (the FORMAT of `respira data import`)."""

    def add(fn: Importer) -> Importer:
        if name in IMPORTERS:
            raise ValueError(f"importer {name!r} registered twice")
        IMPORTERS[name] = fn
        return fn

    return add


def import_dataset(fmt: str, src: str | os.PathLike, **opts: object) -> pd.DataFrame:
    """A manifest for the data set at `src` in layout `fmt`; reads metadata and lists files, never decodes audio
    (except where an option asks it to, e.g. `sides` of covid19-cough-uncut).

    Importer warnings (skipped rows, missing files) are issued as `DataWarning`. Option values
    given as strings (from the command line) are converted to the option's type (bool, int).
    """
    src = Path(src).expanduser()
    params = importer_options(fmt)
    if not src.exists():
        raise DataError(f"{fmt}: source not found: {src}")
    return IMPORTERS[fmt](src, **_coerce_options(fmt, params, opts))


def importer_options(fmt: str, options: Iterable[str] = ()) -> dict[str, inspect.Parameter]:
    """The keyword options of importer `fmt`; DataError for an unknown format or any of `options`
    (names as given, "-" or "_") that it does not take."""
    fn = IMPORTERS.get(fmt)
    if fn is None:
        raise DataError(f"unknown data set format {fmt!r}; known formats: {', '.join(sorted(IMPORTERS))}")
    params = {name: p for name, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY}
    for key in options:
        if key.replace("-", "_") not in params:
            raise DataError(f"{fmt}: unknown option {key!r} (options: {', '.join(params) or 'none'})")
    return params


def _coerce_options(fmt: str, params: dict[str, inspect.Parameter], opts: dict[str, object]) -> dict[str, object]:
    importer_options(fmt, opts)
    out: dict[str, object] = {}
    for key, value in opts.items():
        name = key.replace("-", "_")
        default = params[name].default
        if isinstance(value, str) and isinstance(default, bool):
            value = _parse_bool(fmt, key, value)
        elif isinstance(value, str) and isinstance(default, int):
            try:
                value = int(value)
            except ValueError:
                raise DataError(f"{fmt}: option {key!r} must be an integer, got {value!r}") from None
        out[name] = value
    return out


def _parse_bool(fmt: str, key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise DataError(f"{fmt}: option {key!r} must be true or false, got {value!r}")


def warn(message: str) -> None:
    """Issue an importer warning (a `DataWarning`; the CLI prints these on stderr)."""
    warnings.warn(message, DataWarning, stacklevel=3)


def expect_file(path: Path, fmt: str, what: str = "") -> Path:
    """`path` if it is a file, else DataError saying which file the layout of `fmt` expects."""
    if not path.is_file():
        raise DataError(f"{fmt}: expected {what + ' ' if what else ''}file {path}")
    return path


def find_file(names: str | tuple[str, ...], *folders: Path) -> Path | None:
    """The first file `folder/name` (name matched case-insensitively: copies of the public sets differ in
    case), each name tried in every folder before the next name; or None."""
    names = (names,) if isinstance(names, str) else names
    listings = [_listing(f) for f in folders]
    found = (files.get(n.lower()) for n in names for files in listings)
    return next((p for p in found if p is not None and p.is_file()), None)


def _listing(folder: Path) -> dict[str, Path]:
    """Lower-cased name -> path of the entries of `folder`; empty where it cannot be listed."""
    try:
        return {p.name.lower(): p for p in sorted(folder.iterdir())}
    except OSError:  # absent, not a folder, or not readable (a parent searched for metadata)
        return {}


def audio_index(folder: Path) -> dict[str, Path]:
    """Audio files under `folder` (recursively) keyed by file stem; the first in sorted order wins."""
    index: dict[str, Path] = {}
    for p in list_audio(folder):
        index.setdefault(p.stem, p)
    return index


def list_audio(folder: Path) -> list[Path]:
    """Sorted audio files under `folder`, recursively: `respira.audio.audio_files` (hidden ones skipped)."""
    from respira.audio import audio_files

    return audio_files(folder)


def keep_existing(records: list[dict], fmt: str) -> list[dict]:
    """`records` whose `path` is a file; the others are skipped with one warning that counts them."""
    kept = [r for r in records if os.path.isfile(r["path"])]
    if len(kept) < len(records):
        first = next(r["path"] for r in records if not os.path.isfile(r["path"]))
        warn(f"{fmt}: skipped {len(records) - len(kept)} row(s) whose audio file is missing, e.g. {first}")
    if not kept:
        example = f" (e.g. {records[0]['path']})" if records else ""
        raise DataError(f"{fmt}: none of the {len(records)} listed audio files exist{example}")
    return kept
