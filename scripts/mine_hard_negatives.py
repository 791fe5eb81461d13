"""Hard negatives for the cough detector: bursts an earlier model mistakes for coughs in training calls.

Runs the detector of a training run over the calls of covid19-cough-uncut in that run's train
and val splits, keeps the candidate bursts that lie more than --ignore-around seconds from the
call's annotated cough (so they are not a caller's unannotated repeat coughs) and scored at least
--min-score, and writes them as a manifest of `background` windows centred on each burst. The rows
keep the run's split, so the next stage trains on them without ever touching the test calls.
The two rounds behind the shipped `cough` model (docs/models/cough.md):

    .venv/bin/python scripts/mine_hard_negatives.py --run runs/cough-stage1 \
        -o configs/data/cough-hard-negatives.csv --per-call 15 --min-score 0.3
    .venv/bin/python scripts/mine_hard_negatives.py --run runs/cough-stage2 \
        -o configs/data/cough-hard-negatives-2.csv --per-call 15 --min-score 0.3 --ignore-around 20
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from respira.data import import_dataset
from respira.detect import DetectConfig, detect_file
from respira.inference import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--calls", type=Path, default=Path("../shared/data/covid19-cough-uncut"))
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--min-score", type=float, default=0.2)
    parser.add_argument("--per-call", type=int, default=30, help="at most this many bursts per call, highest first")
    parser.add_argument("--ignore-around", type=float, default=10.0)
    args = parser.parse_args()

    run = pd.read_csv(args.run / "manifest.csv")
    calls = run[(run["dataset"] == "covid19-cough-uncut") & run["split"].isin(["train", "val"])]
    side = calls.groupby("subject")["split"].first().to_dict()
    events = import_dataset("covid19-cough-uncut", args.calls)
    events = events[events["subject"].isin(side)]
    model = load_model(args.run / "model.respira")
    cfg = DetectConfig(candidate_floor=min(args.min_score, 0.05))
    window = model.clip_s
    rows = []
    for i, event in enumerate(events.itertuples(index=False)):
        result = detect_file(event.path, model, cfg)
        far = [c for c in result.candidates if c.score >= args.min_score
               and (c.end < event.start - args.ignore_around or c.start > event.end + args.ignore_around)]
        for c in sorted(far, key=lambda c: -c.score)[: args.per_call]:
            start = max(0.0, (c.start + c.end) / 2 - window / 2)
            rows.append({"path": os.path.relpath(event.path, args.out.parent.resolve()), "label": "background",
                         "start": round(start, 3), "end": round(start + window, 3), "subject": event.subject,
                         "split": side[event.subject], "source_label": "hard_negative", "score": round(c.score, 4),
                         "source": "call-center"})
        print(f"\r{i + 1}/{len(events)} calls, {len(rows)} hard negatives", end="", file=sys.stderr)
    print(file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out, index=False)
    print(f"wrote {args.out}: {len(table)} windows from {table['subject'].nunique()} calls "
          f"(median score {np.median(table['score']):.2f})")


if __name__ == "__main__":
    main()
