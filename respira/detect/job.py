"""A detection run over many files: resume, per-file failures, and every output file.

OUT/ gets: events.csv (file,start,end,label,score: one row per event with score >=
threshold), candidates.csv (the same for every candidate with score >= min(candidate_floor,
threshold): what `evaluate-events` draws its curve from), events.json, audacity/{stem}.txt,
raven/{stem}.txt, timeline/{stem}.png, summary.json, report.html, params.json, and
progress/ (one finished result per file, or the state of the file in progress), so that a
re-run with the same model and settings skips finished files and resumes a killed one after
its last block. The threshold is not part of that identity: re-running with another
threshold reuses the progress.

With a `respira.cluster.Cluster` (`--workers N`, `--scheduler ADDRESS`) the files not yet
finished run as Dask tasks, the model loaded once per worker process; each task writes its
file's progress/ files (atomically, so a task run again after its worker died writes the same
bytes) and returns the result, and the outputs are written from the results in input order:
the same as in one process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from respira.audio import Failure, find_audio_files, read_infos
from respira.cluster import Cluster, Report, WorkerLost, cached, map_files
from respira.detect import checkpoint
from respira.detect.config import DetectConfig, detect_config
from respira.detect.events import Event, write_audacity, write_events_csv, write_events_json, write_raven
from respira.detect.pipeline import Scorer, check_scorer, detect_file
from respira.detect.state import FileResult
from respira.detect.night_report import night_report_html, summary, timeline_png
from respira.errors import ConfigError, RespiraError


@dataclass(frozen=True)
class RunResult:
    """The files done (in input order), those that failed, the settings used and the summary written."""

    results: list[FileResult]
    failures: list[Failure]
    summary: dict
    out: Path
    cfg: DetectConfig

    @property
    def events(self) -> list[Event]:
        return [e for r in self.results for e in r.events]


def detect(
    paths: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike,
    model: str = "cough",
    settings: Mapping[str, Any] | None = None,
    resume: bool = True,
    device: str = "cpu",
    progress: Callable[[float, float], None] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
) -> RunResult:
    """Find events in the audio files and folders `paths` (`respira.audio.find_audio_files`) with
    `model` (a built-in name or a bundle path) and write every output to `out` (see the module
    docstring); a file that cannot be read is a Failure, the others are still done.

    settings: DetectConfig keys over the model's decision threshold, e.g. {"threshold": 0.9}
    (`respira.detect.config.detect_settings` reads them from FILE.yaml and `--set`).
    progress(seconds, total): `seconds` of audio just processed, of `total` in all files (from
    Dask's client thread with a cluster). workers: run the files on a local Dask cluster of that
    many processes; scheduler: on the running Dask cluster at that address (see respira.cluster).
    ConfigError when `paths` hold no audio file, for both workers and scheduler, or when the
    scheduler cannot be reached; ModelError when the model cannot detect.
    """
    cluster = Cluster.of(workers=workers, scheduler=scheduler)
    scorer = _scorer(model, device)
    cfg = detect_config(scorer, settings)
    files, missing = find_audio_files(paths)
    infos, unreadable = read_infos(files, check=False)
    if not files and not missing:
        raise ConfigError(f"no audio files found in {', '.join(map(str, paths))}")
    total = sum(i.duration_s for i in infos)

    def advance(seconds: float) -> None:
        progress(seconds, total)

    return run_detect([i.path for i in infos], scorer, cfg, out, model=model, resume=resume,
                      progress=advance if progress is not None else None, skipped=missing + unreadable,
                      cluster=cluster, device=device)


def run_detect(
    files: Sequence[str],
    scorer: Scorer,
    cfg: DetectConfig,
    out: str | os.PathLike,
    *,
    model: str,
    resume: bool = True,
    progress: Report | None = None,
    skipped: Sequence[Failure] = (),
    cluster: Cluster | None = None,
    device: str = "cpu",
) -> RunResult:
    """Detect in every file, then write every output to `out` (see the module docstring).

    model: the model's name as given (recorded in the outputs) and part of the resume
    identity together with the bundle's file when `model` names one. A file that cannot be
    read is recorded as a Failure and skipped; `skipped`: failures found before (by `detect`),
    recorded with them in params.json. cluster: run the files there, each worker loading
    `model` on `device` (else here, with `scorer`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cluster is None:
        work = functools.partial(_one, scorer=scorer, cfg=cfg, progress_dir=out / "progress", model=model,
                                 resume=resume, progress=progress)
        outcomes = [_attempt(f, functools.partial(work, f)) for f in files]
    else:
        outcomes = _on_cluster(files, scorer, cfg, out / "progress", model=model, resume=resume, progress=progress,
                               cluster=cluster, device=device)
    results = [o for o in outcomes if isinstance(o, FileResult)]
    failures = list(skipped) + [o for o in outcomes if isinstance(o, Failure)]
    info = summary(results, model=model, cfg=cfg)
    params = {"inputs": list(files), "model": model, "threshold": cfg.threshold, "sample_rate": int(scorer.sample_rate),
              "window_s": float(cfg.window_s or scorer.clip_s), "resume": resume, "settings": cfg.to_dict(),
              "failed": [{"file": f.file, "error": f.reason} for f in failures]}
    write_night(results, out, info=info, params=params)
    return RunResult(results, failures, info, out, cfg)


def _one(file: str, scorer: Scorer, cfg: DetectConfig, progress_dir: Path, *, model: str, resume: bool,
         progress: Report | None) -> FileResult:
    ready = _paths_or_result(file, scorer, cfg, progress_dir, model=model, resume=resume, progress=progress)
    if isinstance(ready, FileResult):
        return ready
    done, partial = ready
    return _compute(file, scorer, cfg, done=done, partial=partial, progress=progress)


def _paths_or_result(file: str, scorer: Scorer, cfg: DetectConfig, progress_dir: Path, *, model: str, resume: bool,
                     progress: Report | None) -> FileResult | tuple[Path, Path]:
    """A file's earlier result when resuming finds one, else its (done, partial) paths, ready to run."""
    done, partial = _progress_paths(file, scorer, cfg, progress_dir, model=model)
    if resume and done.is_file():
        return _finished(done, file, cfg, progress=progress)
    if not resume:
        checkpoint.clear_state(partial)
    return done, partial


def _finished(done: Path, file: str, cfg: DetectConfig, *, progress: Report | None) -> FileResult:
    """The result of a file finished by an earlier run, its duration counted as progress."""
    result = checkpoint.with_file(checkpoint.load_result(done, threshold=cfg.threshold), file)
    if progress is not None:
        progress(result.duration_s)
    return result


def _compute(file: str, scorer: Scorer, cfg: DetectConfig, *, done: Path, partial: Path,
             progress: Report | None) -> FileResult:
    """Detect in `file`, resuming from the state in `partial`, and save the result to `done`."""
    result = detect_file(file, scorer, cfg, progress=progress, checkpoint=partial)
    checkpoint.save_result(result, done)
    return result


def _attempt(file: str, work: Callable[[], Any]) -> Any:
    """work(), or the Failure of `file` when it raises a RespiraError or OSError."""
    try:
        return work()
    except (RespiraError, OSError) as e:
        return Failure.of(file, e)


def _progress_paths(file: str, scorer: Scorer, cfg: DetectConfig, progress_dir: Path, *, model: str) -> tuple[Path, Path]:
    """The file's finished result (.npz) and its in-progress state folder (.partial)."""
    key = _key(file, scorer, cfg, model=model)
    return progress_dir / f"{key}.npz", progress_dir / f"{key}.partial"


# --- on a Dask cluster ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    """One file for a worker; paths absolute, since a worker may run elsewhere (same filesystem)."""

    file: str  # as given: names the events
    path: str
    model: str
    model_id: tuple  # the bundle's path, size and mtime: a worker reloads a bundle that changed
    device: str
    cfg: DetectConfig
    done: str
    partial: str


def _on_cluster(files: Sequence[str], scorer: Scorer, cfg: DetectConfig, progress_dir: Path, *, model: str,
                resume: bool, progress: Report | None, cluster: Cluster, device: str) -> list[FileResult | Failure]:
    """The outcome of each file (in order): finished ones read here, the others run as tasks on
    `cluster`, one task per distinct file (a file given twice runs once)."""
    prepare = functools.partial(_paths_or_result, scorer=scorer, cfg=cfg, progress_dir=progress_dir, model=model,
                                resume=resume, progress=progress)
    ready = [_attempt(f, functools.partial(prepare, f)) for f in files]
    bundle = _model_path(model)
    tasks: dict[Path, _Task] = {}
    for file, r in zip(files, ready):
        if isinstance(r, tuple):
            done, partial = (str(p.absolute()) for p in r)
            tasks.setdefault(r[0], _Task(file, os.path.abspath(file), bundle, tuple(_model_id(bundle)), device, cfg,
                                         done, partial))
    keys = list(tasks)
    ran = {keys[k]: outcome for k, outcome in map_files(_detect_task, list(tasks.values()), cluster=cluster,
                                                        progress=progress)}
    return [_named(ran[r[0]], f) if isinstance(r, tuple) else r for f, r in zip(files, ready)]


def _detect_task(task: _Task, report: Report) -> FileResult | Failure:
    """On a worker: detect in one file with the worker's model (loaded with its first file)."""
    def work() -> FileResult:
        scorer = cached(("detect", task.model_id, task.device), lambda: _scorer(task.model, task.device))
        return _compute(task.path, scorer, task.cfg, done=Path(task.done), partial=Path(task.partial), progress=report)

    outcome = _attempt(task.file, work)
    if isinstance(outcome, Failure):  # name the file as given, as in one process
        return Failure(task.file, outcome.reason.replace(task.path, task.file))
    return outcome


def _named(outcome: FileResult | Failure | WorkerLost, file: str) -> FileResult | Failure:
    """A task's outcome naming `file` as given."""
    if isinstance(outcome, FileResult):
        return checkpoint.with_file(outcome, file)
    return Failure.of(file, outcome.reason if isinstance(outcome, Failure) else outcome)


def _scorer(model: str, device: str) -> Scorer:
    from respira.inference import load_model

    scorer = load_model(model, device=device)
    check_scorer(scorer)
    return scorer


def _model_path(model: str) -> str:
    """A bundle's absolute path (a worker's working folder may differ), or the built-in name."""
    return os.path.abspath(model) if Path(model).is_file() else model


def _key(file: str, scorer: Scorer, cfg: DetectConfig, *, model: str) -> str:
    """`{stem}-{hash}`: the file (resolved path, size, mtime), the model and the segmentation settings."""
    st = Path(file).stat()
    identity = [str(Path(file).resolve()), st.st_size, st.st_mtime_ns, _model_id(model), int(scorer.sample_rate),
                float(scorer.clip_s), list(scorer.classes), cfg.segmentation()]
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return f"{Path(file).stem}-{digest}"


def _model_id(model: str) -> list:
    """The model as given, and its bundle file's size and modification time when it names one."""
    path = Path(model)
    return [model] + ([path.stat().st_size, path.stat().st_mtime_ns] if path.is_file() else [])


def write_night(results: Sequence[FileResult], out: Path, *, info: dict, params: dict) -> None:
    """Every output of a night in `out`: events.csv, candidates.csv, events.json, an Audacity and a
    Raven label track and a timeline per file, summary.json (`info`), report.html, params.json (`params`)."""
    events = [e for r in results for e in r.events]
    write_events_csv(events, out / "events.csv")
    write_events_csv([e for r in results for e in r.candidates], out / "candidates.csv")
    write_events_json(events, out / "events.json")
    for r, stem in zip(results, unique_stems([r.file for r in results])):
        write_audacity(r.events, out / "audacity" / f"{stem}.txt")
        write_raven(r.events, out / "raven" / f"{stem}.txt")
        timeline_png(r, out / "timeline" / f"{stem}.png")
    (out / "summary.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    night_report_html(info, results, out)
    (out / "params.json").write_text(json.dumps(params, indent=1), encoding="utf-8")


def unique_stems(files: Sequence[str]) -> list[str]:
    """File stems, with _2, _3, ... added to repeats so that per-file outputs never collide."""
    seen: dict[str, int] = {}
    out = []
    for f in files:
        stem = Path(f).stem
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return out
