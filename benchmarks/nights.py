"""Cough detection on constructed nights where every cough is known.

Each night is `--minutes` of quiet pink bed whose level drifts (-60..-45 dBFS RMS) with real
sounds laid on it one after another, a few seconds apart (2-8 s of bed between them), each at a
random peak level (-30..-6 dBFS), as `respira.testing.mix_night` makes it. A third of the sounds
are coughs (covid19-cough clips and Nonverbal Vocalization `coughing` clips), a third other
vocalizations (the 15 other Nonverbal classes: laughing, sneezing, throat-clearing, panting, ...)
and a third phone speech: 5-10 s pieces of the operator's side of covid19-cough-uncut calls, as
`respira data import covid19-cough-uncut --sides DIR` writes them (`--sides`; made on the first
run, reused after). Left out of the speech: pieces quieter than the operator's usual level
(pauses, hold silence), and the annotated cough's time +-10 s, against a mis-picked side or the
caller's cough echoing on the operator's line (in call f50d2d53, with an 89-s annotation, the side
taken as the operator's is the coughing caller's). Every sound is resampled to 16 kHz and trimmed
to where its 10-ms frame energy is within 30 dB of its loudest frame, so a planted interval is
where the sound is. Clips are drawn from shuffled pools, each used once before any is used again;
unreadable files (a few covid19-cough mp3s are broken) are skipped with a warning.

Held-out subjects only: the sides of the split are those the model's training gave every
subject. The training config comes from the model bundle's provenance (or `--config`); its
sources are imported and split exactly as `respira train` does it
(`respira.train.dataset.load_sources`, `select_rows`, `assign_splits`: with the `cough`
config's {method: hash, seed: 0} a subject's side follows from a hash of (seed, subject), and
rows that name a split, such as the mined hard negatives, pin their subject's side). Only
Nonverbal speakers and call uuids (a covid19-cough clip shares the uuid of the call it was cut
from) on the `--split` side (test, or val) are used.

`respira detect` (the CLI, with `--model`) runs on the nights; its candidates (every burst scoring
at least 0.05) give the sensitivity / false-alarm curve through
`respira.detect.event_metrics.evaluate_events` with no ignore zones: a planted cough clip is one
event, found when a detection overlaps it; a detection that overlaps no planted cough is a
false alarm, attributed to the planted sound it overlaps most ("bed" when none). The count
error compares, per 10 minutes of night, the detector's events at its threshold (what
`summary.json` counts as coughs) with the planted cough clips. A Nonverbal `coughing` clip may
hold several coughs and a covid19-cough clip a few bursts, so part of a positive error can be
real coughs; `per_clip` counts the events that fall on one planted cough as one, leaving the
error of missed clips and false alarms alone.

OUT holds nights/night{i}.flac (16 kHz mono), truth.csv (file, start, end, label, source,
subject, dataset, peak_dbfs, source_start, source_end: the part of the source file planted,
in s), detect/ (the detector's outputs) and metrics.json. Progress on stderr; the last stdout
line is one JSON object.

    .venv/bin/python benchmarks/nights.py [--split test|val] [--nights 4] [--minutes 60] [--model cough]
        [--out DIR] [--seed 0] [--sides DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from respira import audio
from respira.data.importers.covid import SIDES_CACHE
from respira.errors import AudioError
from respira.testing import Placed, mix_night, sound_extent

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SR = 16000
SEGMENT_S = 600.0  # the count error is per 10 minutes
SPEECH_S = (5.0, 10.0)  # lengths of the speech pieces
SPEECH_LOUD_DB = 10.0  # a speech piece's 95th-percentile frame level is within this of its side's
AROUND_COUGH_S = 10.0  # no speech piece from within this of a call's annotated cough
KINDS = ("cough", "vocalization", "speech")  # drawn in equal shares


@dataclass(frozen=True)
class Clip:
    """A sound to plant: float32 [samples] at 16 kHz, trimmed, and where it came from."""

    y: np.ndarray
    label: str
    source: str
    subject: str
    dataset: str
    source_start: float


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- held-out sounds -------------------------------------------------------------------------


def held_out(*, model: str, config: Path | None, split: str) -> set[str]:
    """The subjects on the `split` side of the split that trained `model` (see the module docstring)."""
    from respira.bundle import read_meta
    from respira.config import config_from_dict, load_config
    from respira.train.dataset import subjects_in_split

    if config is not None:
        cfg = load_config(config)
    else:
        raw = read_meta(model).provenance.get("config")
        if raw is None:
            sys.exit(f"{model} does not say how it was trained; pass --config")
        cfg = config_from_dict(raw)
    return subjects_in_split(cfg, split)


def pools(*, subjects: set[str], sides: Path) -> dict[str, list[Clip]]:
    """The held-out sounds of each kind of KINDS, decoded, resampled and trimmed."""
    from respira.data import import_dataset

    nonverbal = import_dataset("nonverbal", DATA / "nonverbal-vocalization")
    covid = import_dataset("covid19-cough", DATA / "covid19-cough")
    calls = import_dataset("covid19-cough-uncut", DATA / "covid19-cough-uncut", sides=sides)
    nonverbal = nonverbal[nonverbal["subject"].isin(subjects)]
    covid = covid[covid["subject"].isin(subjects)]
    operator = calls[calls["subject"].isin(subjects) & (calls["side"] == "operator")]
    caller = calls[calls["side"] == "caller"]
    annotated = dict(zip(caller["subject"], zip(caller["start"] - AROUND_COUGH_S, caller["end"] + AROUND_COUGH_S)))
    vocal = list(zip(nonverbal["path"], nonverbal["label"], nonverbal["subject"], ["nonverbal"] * len(nonverbal)))
    coughs = [(p, "cough", s, f"covid19-cough/{source}")
              for p, s, source in zip(covid["path"], covid["subject"], covid["source"])]
    rng = np.random.default_rng(0)  # where the speech pieces are cut; the nights' randomness is --seed's
    return {"cough": _clips(coughs + [row for row in vocal if row[1] == "cough"]),
            "vocalization": _clips([row for row in vocal if row[1] != "cough"]),
            "speech": [c for p, s in zip(operator["path"], operator["subject"])
                       for c in speech_pieces(p, subject=s, avoid=annotated[s], rng=rng)]}


def _clips(rows: Sequence[tuple[str, str, str, str]]) -> list[Clip]:
    """(path, label, subject, dataset) -> trimmed Clips; unreadable or silent files are skipped with a warning."""
    out = []
    for path, label, subject, dataset in rows:
        try:
            y = audio.load(path, sample_rate=SR)
        except AudioError as e:
            _log(f"warning: skipped {e}")
            continue
        a, b = sound_extent(y, sample_rate=SR)
        if b == a:
            _log(f"warning: skipped {path}: silent")
            continue
        out.append(Clip(y[a:b].copy(), label, str(path), str(subject), dataset, a / SR))
    return out


def speech_pieces(path: str, *, subject: str, avoid: tuple[float, float], rng: np.random.Generator) -> list[Clip]:
    """An operator's side cut into consecutive pieces of SPEECH_S seconds, trimmed; left out are the
    pieces that overlap `avoid` (s) and those whose 95th-percentile 10-ms frame level is more than
    SPEECH_LOUD_DB below the side's."""
    try:
        y = audio.load(path, sample_rate=SR)
    except AudioError as e:
        _log(f"warning: skipped {e}")
        return []
    side_level = _loud_level(y)
    out, at = [], 0
    while at + int(SPEECH_S[0] * SR) <= len(y):
        piece = y[at : at + int(round(rng.uniform(*SPEECH_S) * SR))]
        a, b = sound_extent(piece, sample_rate=SR)
        clear = at + len(piece) <= avoid[0] * SR or at >= avoid[1] * SR
        if clear and b > a and _loud_level(piece) >= side_level - SPEECH_LOUD_DB:
            out.append(Clip(piece[a:b].copy(), "speech", path, subject, "covid19-cough-uncut/operator", (at + a) / SR))
        at += len(piece)
    return out


def _loud_level(y: np.ndarray) -> float:
    """The 95th percentile of the 10-ms frame levels of `y` (dBFS)."""
    n = len(y) // 160
    power = np.mean(np.square(y[: n * 160], dtype=np.float64).reshape(n, 160), axis=1)
    return float(np.percentile(10 * np.log10(power + 1e-12), 95))


# --- nights ----------------------------------------------------------------------------------


def draw(pools: dict[str, list[Clip]], *, rng: np.random.Generator) -> Iterator[Clip]:
    """Endless clips: a kind of KINDS in equal shares, then the next clip of that kind's pool, which
    is gone through in a fresh random order each time round."""
    orders = {kind: iter(()) for kind in KINDS}
    while True:
        kind = KINDS[rng.integers(len(KINDS))]
        clip = next(orders[kind], None)
        if clip is None:
            orders[kind] = iter([pools[kind][i] for i in rng.permutation(len(pools[kind]))])
            clip = next(orders[kind])
        yield clip


def build_nights(pools: dict[str, list[Clip]], *, nights: int, minutes: float, seed: int, out: Path) -> pd.DataFrame:
    """Write OUT/nights/night{i}.flac; returns the truth table (one row per planted sound)."""
    import soundfile as sf

    (out / "nights").mkdir(parents=True, exist_ok=True)
    clips = draw(pools, rng=np.random.default_rng([seed, 0]))
    rows = []
    for n in range(nights):
        drawn: list[Clip] = []

        def sounds() -> Iterator[np.ndarray]:
            for clip in clips:
                drawn.append(clip)
                yield clip.y

        y, placed = mix_night(sounds(), duration_s=minutes * 60, sample_rate=SR, rng=np.random.default_rng([seed, 1, n]))
        path = out / "nights" / f"night{n}.flac"
        sf.write(path, y, SR, subtype="PCM_16")
        rows += [_truth_row(path, p, drawn[p.index]) for p in placed]
        _log(f"night {n}: {len(placed)} sounds, {sum(drawn[p.index].label == 'cough' for p in placed)} coughs")
    return pd.DataFrame(rows)


def _truth_row(night: Path, placed: Placed, clip: Clip) -> dict:
    return {"file": str(night), "start": round(placed.start, 4), "end": round(placed.end, 4), "label": clip.label,
            "source": clip.source, "subject": clip.subject, "dataset": clip.dataset,
            "peak_dbfs": round(placed.peak_db, 2), "source_start": round(clip.source_start, 4),
            "source_end": round(clip.source_start + len(clip.y) / SR, 4)}


# --- detection and scores --------------------------------------------------------------------


def detect(files: list[str], *, model: str, out: Path) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """`respira detect` on `files`: (candidates, events, the detector's threshold)."""
    respira = str(Path(sys.executable).parent / "respira")
    subprocess.run([respira, "detect", *files, "--model", model, "-o", str(out), "--no-resume"],
                   check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    return pd.read_csv(out / "candidates.csv"), pd.read_csv(out / "events.csv"), float(summary["threshold"])


def score(truth: pd.DataFrame, candidates: pd.DataFrame, events: pd.DataFrame, *, threshold: float,
          durations: dict[str, float]) -> dict:
    """The JSON-ready figures of the module docstring."""
    from respira.detect.event_metrics import evaluate_events, false_alarms_at, match_detections

    annotations = truth.rename(columns={"file": "path"})
    kwargs = {"durations": durations, "ignore_around_s": 0.0}
    metrics = evaluate_events(candidates, annotations, threshold=threshold, **kwargs)
    matched = match_detections(candidates, annotations, **kwargs)
    at_1 = threshold_at(matched.detections, fa_per_hour=1.0, hours=matched.hours_outside)
    coughs = truth[truth["label"] == "cough"]
    found = coughs.merge(matched.events, on=["file", "start", "end"], how="left")["best"] >= threshold
    by_dataset = found.groupby(coughs["dataset"].to_numpy()).mean()
    at_1_by_class = by_class(false_alarms_at(matched, at_1), truth) if at_1 is not None else None
    return {
        "threshold": threshold, "sensitivity": metrics["sensitivity"],
        "false_alarms_per_hour": metrics["false_alarms_per_hour"], "precision": metrics["precision"],
        "sensitivity_at_1_fa_per_hour": metrics["sensitivity_at_1_fa_per_hour"],
        "sensitivity_at_2_fa_per_hour": metrics["sensitivity_at_2_fa_per_hour"],
        "sensitivity_at_fa_per_hour": metrics["sensitivity_at_fa_per_hour"],
        "sensitivity_by_dataset": {k: round(float(v), 4) for k, v in by_dataset.items()},
        "false_alarms_by_class": by_class(false_alarms_at(matched, threshold), truth),
        "threshold_at_1_fa_per_hour": at_1,
        "false_alarms_by_class_at_1_fa_per_hour": at_1_by_class,
        "count_error_per_10_min": count_error(truth, events, durations=durations),
        "curve": metrics["curve"],
    }


def threshold_at(detections: pd.DataFrame, *, fa_per_hour: float, hours: float) -> float | None:
    """The lowest detection score whose threshold gives at most `fa_per_hour` false alarms (None: no detections)."""
    allowed = int(np.floor(fa_per_hour * hours + 1e-9))
    fa = np.sort(detections.loc[detections["kind"] == "false_alarm", "score"].to_numpy(float))[::-1]
    scores = detections["score"].to_numpy(float)
    above = scores[scores > fa[allowed]] if len(fa) > allowed else scores
    return float(above.min()) if len(above) else None


def by_class(false_alarms: pd.DataFrame, truth: pd.DataFrame) -> dict[str, int]:
    """{label of the planted sound each false alarm overlaps most ("bed": none): false alarms}, most first."""
    counts: dict[str, int] = {}
    for file, start, end in zip(false_alarms["file"], false_alarms["start"], false_alarms["end"]):
        t = truth[truth["file"] == file]
        overlap = np.minimum(t["end"].to_numpy(), end) - np.maximum(t["start"].to_numpy(), start)
        label = t["label"].iloc[int(np.argmax(overlap))] if len(t) and overlap.max() > 0 else "bed"
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def count_error(truth: pd.DataFrame, events: pd.DataFrame, *, durations: dict[str, float]) -> dict:
    """Detected minus planted coughs per 10-minute segment of each night (a shorter last segment
    scaled to 10 minutes): mean and mean absolute; `per_clip`: the same with the events on one
    planted cough counted once (in the segment of the first); and the events per found planted
    cough, by data set."""
    coughs = truth[truth["label"] == "cough"]
    planted, detected, per_clip, on_clips = [], [], [], []
    for file, duration in durations.items():
        c, e = coughs[coughs["file"] == file], events[events["file"] == file]
        n = int(np.ceil(duration / SEGMENT_S))
        scale = SEGMENT_S / np.diff(np.minimum(np.arange(n + 1) * SEGMENT_S, duration))
        segment = (e["start"].to_numpy(float) // SEGMENT_S).astype(int)
        hit = np.array([_overlapping(c, s, t) for s, t in zip(e["start"], e["end"])], dtype=int)
        once = hit < 0
        once[np.unique(hit, return_index=True)[1]] = True
        planted.append(scale * np.bincount((c["start"].to_numpy(float) // SEGMENT_S).astype(int), minlength=n))
        detected.append(scale * np.bincount(segment, minlength=n))
        per_clip.append(scale * np.bincount(segment[once], minlength=n))
        on_clips += [(c["dataset"].iloc[h], file, h) for h in hit[hit >= 0]]
    planted_, detected_, per_clip_ = (np.concatenate(v) for v in (planted, detected, per_clip))
    hits = pd.DataFrame(on_clips, columns=["dataset", "file", "clip"])
    per_found = hits.groupby("dataset").size() / hits.drop_duplicates().groupby("dataset").size()

    def errors(counts: np.ndarray) -> dict:
        return {"detected_mean": round(counts.mean(), 3), "mean_error": round((counts - planted_).mean(), 3),
                "mean_abs_error": round(np.abs(counts - planted_).mean(), 3)}

    return {"segments": len(planted_), "planted_mean": round(planted_.mean(), 3)} | errors(detected_) \
        | {"per_clip": errors(per_clip_), "events_per_found_cough": {k: round(v, 2) for k, v in per_found.items()}}


def _overlapping(coughs: pd.DataFrame, start: float, end: float) -> int:
    """Row position in `coughs` of the planted cough overlapping start..end most; -1: none."""
    overlap = np.minimum(coughs["end"].to_numpy(), end) - np.maximum(coughs["start"].to_numpy(), start)
    return int(np.argmax(overlap)) if len(coughs) and overlap.max() > 0 else -1


def _counts(column: pd.Series) -> dict[str, int]:
    return {k: int(v) for k, v in column.value_counts().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("test", "val"), default="test", help="whose sounds (default: test)")
    parser.add_argument("--nights", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=60.0, help="length of each night")
    parser.add_argument("--model", default="cough", help="bundle or built-in name (default: cough)")
    parser.add_argument("--config", type=Path, help="the model's training config (default: the bundle's provenance)")
    parser.add_argument("--out", type=Path, help="keep the outputs here (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sides", type=Path, default=SIDES_CACHE,
                        help="the calls' sides, made there unless already there (default: %(default)s)")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="respira-nights-"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    subjects = held_out(model=args.model, config=args.config, split=args.split)
    sounds = pools(subjects=subjects, sides=args.sides)
    _log(f"{len(subjects)} {args.split} subjects: " + ", ".join(f"{len(v)} {k} clips" for k, v in sounds.items()))
    truth = build_nights(sounds, nights=args.nights, minutes=args.minutes, seed=args.seed, out=out)
    truth.to_csv(out / "truth.csv", index=False)
    t1 = time.perf_counter()
    files = list(dict.fromkeys(truth["file"]))
    candidates, events, threshold = detect(files, model=args.model, out=out / "detect")
    t2 = time.perf_counter()
    durations = {f: args.minutes * 60 for f in files}
    metrics = score(truth, candidates, events, threshold=threshold, durations=durations)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    _log(f"outputs in {out}")
    metrics.pop("curve")
    print(json.dumps({"split": args.split, "model": args.model, "seed": args.seed, "nights": args.nights,
                      "hours": round(args.nights * args.minutes / 60, 3), "planted": _counts(truth["label"]),
                      "planted_coughs_by_dataset": _counts(truth.loc[truth["label"] == "cough", "dataset"]),
                      "subjects_planted": int(truth["subject"].nunique())}
                     | metrics | {"build_s": round(t1 - t0, 1), "detect_s": round(t2 - t1, 1),
                                  "score_s": round(time.perf_counter() - t2, 1)}))


if __name__ == "__main__":
    main()
