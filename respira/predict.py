"""The predict job: audio files or folders -> one record per clip, written as a table, CSV or JSON.

`respira predict` runs `predict_files` and `format_records`; `Model.predict` is the scoring itself.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from respira.errors import AudioError
from respira.tasks import MULTILABEL_SEPARATOR, TASKS

if TYPE_CHECKING:
    from respira.inference import Model

FORMATS = ("table", "csv", "json")


@dataclass(frozen=True)
class Predicted:
    """records: one per file that loaded (see `Model.predict`), in file order. failures: "file: reason"
    for each path that does not exist, then each file that did not load."""

    records: list[dict]
    failures: tuple[str, ...]


def predict_files(model: Model, paths: Sequence[Path], *, batch_size: int = 32) -> Predicted:
    """Score the files and folders `paths` (`respira.audio.find_audio_files`) through `model` (a progress
    bar on a terminal for several); AudioError for a folder without audio files."""
    from respira.audio import Failure, find_audio_files

    _check_folders(paths)
    files, missing = find_audio_files(paths)
    records = model.predict(files, batch_size=batch_size, progress=len(files) > 1)
    return Predicted(
        records=[r for r in records if "error" not in r],
        failures=tuple(f.reason for f in missing) + tuple(Failure.of(r["file"], r["error"]).reason
                                                          for r in records if "error" in r),
    )


def _check_folders(paths: Sequence[Path]) -> None:
    """AudioError for the first of `paths` that is a folder without audio files."""
    from respira.audio import AUDIO_EXTENSIONS, audio_files

    for path in paths:
        if path.is_dir() and not audio_files(path):
            raise AudioError(f"{path}: no audio files in this folder (looked for {', '.join(sorted(AUDIO_EXTENSIONS))})")


def format_records(records: list[dict], *, fmt: str, classes: Sequence[str], task: str) -> str:
    """Records of a model with `classes` and `task` as text: "table" (rich), "csv" (the task's
    `Task.columns`, floats with 6 decimals) or "json" (the records as they are)."""
    return _WRITERS[fmt](records, classes, task)


def _cells(record: dict) -> dict[str, object]:
    """A record's cells: its fields (a list of labels joined by "+"), then prob_<class>."""
    cells: dict[str, object] = {k: MULTILABEL_SEPARATOR.join(v) if isinstance(v, list) else v
                                for k, v in record.items() if k not in ("probabilities", "duration_s")}
    cells.update({f"prob_{c}": p for c, p in record.get("probabilities", {}).items()})
    return cells


def _csv(records: list[dict], classes: Sequence[str], task: str) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TASKS[task].columns(classes), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in _cells(r).items()})
    return buffer.getvalue()


def _json(records: list[dict], classes: Sequence[str], task: str) -> str:
    return json.dumps(records, indent=1) + "\n"


def _table(records: list[dict], classes: Sequence[str], task: str) -> str:
    from rich.console import Console
    from rich.table import Table

    names = TASKS[task].columns(classes)
    table = Table(*names)
    table.columns[0].overflow = "fold"
    for r in records:
        cells = _cells(r)
        table.add_row(*(f"{cells[k]:.3f}" if isinstance(cells[k], float) else str(cells[k]) for k in names))
    buffer = Console(file=io.StringIO(), width=max(Console().width, 100), force_terminal=False)
    buffer.print(table)
    return buffer.file.getvalue()


_WRITERS: dict[str, Callable[[list[dict], Sequence[str], str], str]] = {"table": _table, "csv": _csv, "json": _json}
"""format -> (records, classes, task) -> text."""
