"""The predict job: audio files or folders -> one record per clip, written as a table, CSV or JSON.

`respira predict` runs `predict_files` and `format_records`; `Model.predict` is the scoring itself.
With a `respira.cluster.Cluster` (`--workers N`, `--scheduler ADDRESS`) the clips are scored in
batches of whole `batch_size` chunks (about CLIPS_PER_TASK clips: the scheduler's ~1 ms per task
against ~5 ms per clip) as Dask tasks, the model loaded once per worker process by its name or
bundle path; the records are those of one process, in the same order.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from respira.cluster import Cluster, Report, WorkerLost, cached, map_files
from respira.errors import AudioError, ConfigError
from respira.tasks import MULTILABEL_SEPARATOR, TASKS

if TYPE_CHECKING:
    from respira.inference import Model

FORMATS = ("table", "csv", "json")
BACKENDS = ("torch", "onnx")
CLIPS_PER_TASK = 64


@dataclass(frozen=True)
class Predicted:
    """records: one per file that loaded (see `Model.predict`), in file order. failures: "file: reason"
    for each path that does not exist, then each file that did not load. classes, task: the model's."""

    records: list[dict]
    failures: tuple[str, ...]
    classes: tuple[str, ...]
    task: str


def predict_files(model: str | os.PathLike | Model, paths: Sequence[str | os.PathLike], *, backend: str = "torch",
                  batch_size: int = 32, workers: int | None = None, scheduler: str | None = None) -> Predicted:
    """Score the files and folders `paths` (`respira.audio.find_audio_files`) through `model` (a Model, or a
    built-in name or bundle path loaded by `load_predictor` on `backend`), a progress bar over the clips on a
    terminal for several. workers: on a local Dask cluster of that many processes; scheduler: on the running
    Dask cluster at that address (see respira.cluster; the model by name or path, not a Model).
    AudioError for a folder without audio files; ConfigError for both workers and scheduler, a Model with
    either, or a scheduler that cannot be reached."""
    from respira.audio import Failure, find_audio_files

    cluster = Cluster.of(workers=workers, scheduler=scheduler)
    named = isinstance(model, (str, os.PathLike))
    if cluster is not None and not named:
        raise ConfigError("workers and scheduler load the model themselves: give its name or bundle path, not a Model")
    scorer = load_predictor(model, backend=backend) if named else model
    _check_folders(paths)
    files, missing = find_audio_files(paths)
    if cluster is None:
        records = scorer.predict(files, batch_size=batch_size, progress=len(files) > 1)
    else:
        records = _on_cluster(files, os.fspath(model), backend=backend, batch_size=batch_size, cluster=cluster)
    return Predicted(
        records=[r for r in records if "error" not in r],
        failures=tuple(f.reason for f in missing) + tuple(Failure.of(r["file"], r["error"]).reason
                                                          for r in records if "error" in r),
        classes=scorer.classes,
        task=scorer.task,
    )


def load_predictor(model: str | os.PathLike, *, backend: str = "torch") -> Model:
    """A built-in name or bundle path on `backend`: "torch", or "onnx" (a bundle is exported to ONNX
    first, an .onnx file is run as it is)."""
    if backend == "onnx":
        from respira.export import load_exported

        return load_exported(model)
    from respira.inference import load_model

    return load_model(model, backend=backend)


def _check_folders(paths: Sequence[str | os.PathLike]) -> None:
    """AudioError for the first of `paths` that is a folder without audio files."""
    from respira.audio import AUDIO_EXTENSIONS, audio_files

    for path in paths:
        if Path(path).is_dir() and not audio_files(path):
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


# --- on a Dask cluster ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Batch:
    """Clips for a worker: (name as given, absolute path) each, since a worker may run elsewhere (same filesystem)."""

    clips: tuple[tuple[str, str], ...]
    model: str  # a built-in name or a bundle's absolute path
    model_id: tuple  # and the bundle's size and mtime: a worker reloads a bundle that changed
    backend: str
    batch_size: int


def _on_cluster(files: Sequence[str], model: str, *, backend: str, batch_size: int, cluster: Cluster) -> list[dict]:
    """The records of `files` (in order), scored on `cluster`; a batch whose workers kept dying fails its files."""
    from respira import display

    batches = _batches(files, model, backend=backend, batch_size=batch_size)
    done: dict[int, list[dict]] = {}
    with display.progress(len(files), description="scoring", enabled=len(files) > 1) as advance:
        for index, outcome in map_files(_predict_batch, batches, cluster=cluster, progress=advance):
            lost = isinstance(outcome, WorkerLost)
            done[index] = [{"file": name, "error": str(outcome)} for name, _ in batches[index].clips] if lost else outcome
    return [r for index in range(len(batches)) for r in done[index]]


def _batches(files: Sequence[str], model: str, *, backend: str, batch_size: int) -> list[_Batch]:
    """`files` cut into whole `batch_size` chunks of about CLIPS_PER_TASK clips (those of one process)."""
    size = batch_size * max(1, round(CLIPS_PER_TASK / batch_size))
    model_id = _model_id(model)
    clips = [(f, os.path.abspath(f)) for f in files]
    return [_Batch(tuple(clips[i:i + size]), model_id[0], model_id, backend, batch_size) for i in range(0, len(clips), size)]


def _model_id(model: str) -> tuple:
    """A bundle's absolute path (a worker's working folder may differ), size and mtime; or the built-in name."""
    path = Path(model)
    if not path.is_file():
        return (model,)
    st = path.stat()
    return (str(path.absolute()), st.st_size, st.st_mtime_ns)


def _predict_batch(batch: _Batch, report: Report) -> list[dict]:
    """On a worker: a batch's records, its clips named as given, by the worker's model (loaded with its first batch)."""
    scorer = cached(("predict", batch.model_id, batch.backend),
                    lambda: load_predictor(batch.model, backend=batch.backend))
    records = scorer.predict([path for _, path in batch.clips], batch_size=batch.batch_size)
    report(len(records))
    return [_named(r, name, path) for r, (name, path) in zip(records, batch.clips)]


def _named(record: dict, name: str, path: str) -> dict:
    """A record naming its file `name` (in its error too) instead of `path`."""
    if "error" in record:
        return {"file": name, "error": record["error"].replace(path, name)}
    return {**record, "file": name}
