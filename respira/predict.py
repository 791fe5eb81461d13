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
    for each file that did not."""

    records: list[dict]
    failures: tuple[str, ...]


def audio_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, and the audio files (by extension) under each folder, sorted; AudioError for a folder without any."""
    from respira.audio import AUDIO_EXTENSIONS

    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        if not found:
            raise AudioError(f"{path}: no audio files in this folder (looked for {', '.join(sorted(AUDIO_EXTENSIONS))})")
        files.extend(found)
    return files


def predict_files(model: Model, paths: Sequence[Path], *, batch_size: int = 32) -> Predicted:
    """Score the `audio_files` of `paths` through `model` (a progress bar on a terminal for several)."""
    files = audio_files(paths)
    records = model.predict([str(f) for f in files], batch_size=batch_size, progress=len(files) > 1)
    return Predicted(
        records=[r for r in records if "error" not in r],
        failures=tuple(r["error"] if r["error"].startswith(r["file"]) else f"{r['file']}: {r['error']}"
                       for r in records if "error" in r),
    )


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
