"""A detection run over many files: resume, per-file failures, and every output file.

OUT/ gets: events.csv (file,start,end,label,score: one row per event with score >=
threshold), candidates.csv (the same for every candidate with score >= min(candidate_floor,
threshold): what `evaluate-events` draws its curve from), events.json, audacity/{stem}.txt,
raven/{stem}.txt, timeline/{stem}.png, summary.json, report.html, params.json, and
progress/ (one finished result per file, or the state of the file in progress), so that a
re-run with the same model and settings skips finished files and resumes a killed one after
its last block. The threshold is not part of that identity: re-running with another
threshold reuses the progress.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from respira.audio import Failure, find_audio_files, read_infos
from respira.detect import checkpoint
from respira.detect.config import DetectConfig, detect_config
from respira.detect.events import Event, write_audacity, write_events_csv, write_events_json, write_raven
from respira.detect.pipeline import Scorer, check_scorer, detect_file
from respira.detect.state import FileResult
from respira.detect.report import night_report_html, summary, timeline_png
from respira.errors import ConfigError, RespiraError


@dataclass(frozen=True)
class RunResult:
    """The files done (in input order), those that failed, the settings used and the summary written."""

    results: list[FileResult]
    failures: list[Failure]
    summary: dict
    out_dir: Path
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
) -> RunResult:
    """Find events in the audio files and folders `paths` (`respira.audio.find_audio_files`) with
    `model` (a built-in name or a bundle path) and write every output to `out` (see the module
    docstring); a file that cannot be read is a Failure, the others are still done.

    settings: DetectConfig keys over the model's decision threshold, e.g. {"threshold": 0.9}
    (`respira.detect.config.detect_settings` reads them from FILE.yaml and `--set`).
    progress(seconds, total): `seconds` of audio just processed, of `total` in all files.
    ConfigError when `paths` hold no audio file; ModelError when the model cannot detect.
    """
    from respira.inference import load_model

    scorer = load_model(model, device=device)
    check_scorer(scorer)
    cfg = detect_config(scorer, settings)
    files, missing = find_audio_files(paths)
    infos, unreadable = read_infos(files, check=False)
    if not files and not missing:
        raise ConfigError(f"no audio files found in {', '.join(map(str, paths))}")
    total = sum(i.duration_s for i in infos)

    def advance(seconds: float) -> None:
        progress(seconds, total)

    return run_detect([i.path for i in infos], scorer, cfg, out, model=model, resume=resume,
                      progress=advance if progress is not None else None, skipped=missing + unreadable)


def run_detect(
    files: Sequence[str],
    scorer: Scorer,
    cfg: DetectConfig,
    out_dir: str | os.PathLike,
    *,
    model: str,
    resume: bool = True,
    progress: Callable[[float], None] | None = None,
    skipped: Sequence[Failure] = (),
) -> RunResult:
    """Detect in every file, then write every output to `out_dir` (see the module docstring).

    model: the model's name as given (recorded in the outputs) and part of the resume
    identity together with the bundle's file when `model` names one. A file that cannot be
    read is recorded as a Failure and skipped; `skipped`: failures found before (by `detect`),
    recorded with them in params.json.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results, failures = [], list(skipped)
    for file in files:
        try:
            results.append(_one(file, scorer, cfg, out / "progress", model=model, resume=resume, progress=progress))
        except (RespiraError, OSError) as e:
            failures.append(Failure.of(file, e))
    info = summary(results, model=model, cfg=cfg)
    params = {"inputs": list(files), "model": model, "threshold": cfg.threshold, "sample_rate": int(scorer.sample_rate),
              "window_s": float(cfg.window_s or scorer.clip_seconds), "resume": resume, "settings": cfg.to_dict(),
              "failed": [{"file": f.file, "error": f.reason} for f in failures]}
    write_night(results, out, info=info, params=params)
    return RunResult(results, failures, info, out, cfg)


def _one(file: str, scorer: Scorer, cfg: DetectConfig, progress_dir: Path, *, model: str, resume: bool,
         progress: Callable[[float], None] | None) -> FileResult:
    key = _key(file, scorer, cfg, model=model)
    done, partial = progress_dir / f"{key}.npz", progress_dir / f"{key}.partial"
    if resume and done.is_file():
        result = checkpoint.with_file(checkpoint.load_result(done, threshold=cfg.threshold), file)
        if progress is not None:
            progress(result.duration_s)
        return result
    if not resume:
        checkpoint.clear_state(partial)
    result = detect_file(file, scorer, cfg, progress=progress, checkpoint=partial)
    checkpoint.save_result(result, done)
    return result


def _key(file: str, scorer: Scorer, cfg: DetectConfig, *, model: str) -> str:
    """`{stem}-{hash}`: the file (resolved path, size, mtime), the model and the segmentation settings."""
    st = Path(file).stat()
    model_file = Path(model)
    model_id = [model] + ([model_file.stat().st_size, model_file.stat().st_mtime_ns] if model_file.is_file() else [])
    identity = [str(Path(file).resolve()), st.st_size, st.st_mtime_ns, model_id, int(scorer.sample_rate),
                float(scorer.clip_seconds), list(scorer.classes), cfg.segmentation()]
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return f"{Path(file).stem}-{digest}"


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
