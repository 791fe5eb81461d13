"""Cough detection accuracy on the whole phone calls of covid19-cough-uncut that a model never saw.

Takes a training run of configs/cough.yaml (its manifest.csv says which calls were in the test
split), runs `respira detect` on those calls with the run's bundle (or the built-in `cough`
model trained from the same config), then `respira evaluate-events` against the annotated
coughs. Last stdout line: one JSON object with sensitivity, false alarms per hour, the
sensitivity at 1, 2, 5, 10 and 20 false alarms per hour and their mean (one number to compare
models by); `wider_zone` repeats those with 20-s zones, a diagnostic of unannotated coughs just
beyond the 10-s zones (callers who keep coughing), and `without_top_call` leaves out the one call
of the highest-scoring false alarm, to show how much a single call decides the low end.
`--split val` measures the validation calls instead: compare detector settings and models there.
OUT/eval10/review/index.html shows the spectrograms of the 10 highest-scoring false alarms and
of 10 missed coughs, with the annotations and detections around them.

    .venv/bin/python benchmarks/detect_calls.py --run runs/cough [--model cough] [--no-gate] [--split val]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CALLS = ROOT.parent / "shared" / "data" / "covid19-cough-uncut"


def split_calls(run_dir: Path, calls: Path, out: Path, split: str) -> Path:
    """A manifest of the annotated coughs of the calls in the run's `split` (test or val)."""
    from respira.data import import_dataset, write_manifest

    run = pd.read_csv(run_dir / "manifest.csv")
    held_out = set(run.loc[(run["split"] == split) & (run["dataset"] == "covid19-cough-uncut"), "subject"])
    if not held_out:
        sys.exit(f"{run_dir / 'manifest.csv'} has no covid19-cough-uncut calls in its {split} split")
    events = import_dataset("covid19-cough-uncut", calls)
    manifest = out / f"{split}_calls.csv"
    write_manifest(events[events["subject"].isin(held_out)].reset_index(drop=True), manifest)
    return manifest


def rates(metrics: dict) -> dict:
    """The sensitivity at each false-alarm rate of evaluate-events and their mean."""
    at = metrics["sensitivity_at_fa_per_hour"]
    return {"sensitivity_at_fa_per_hour": at, "mean_sensitivity_1_to_20_fa_per_hour": round(sum(at.values()) / len(at), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a run directory of configs/cough.yaml")
    parser.add_argument("--model", help="bundle or built-in name (default: RUN/model.respira)")
    parser.add_argument("--calls", type=Path, default=CALLS)
    parser.add_argument("--out", type=Path, help="keep the outputs here (default: a temp folder)")
    parser.add_argument("--no-gate", action="store_true", help="score every window (checks the gate loses nothing)")
    parser.add_argument("--split", choices=("test", "val"), default="test", help="which calls of the run (default: test)")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="respira-calls-"))
    out.mkdir(parents=True, exist_ok=True)
    manifest = split_calls(args.run, args.calls, out, args.split)
    files = sorted(set(pd.read_csv(manifest)["path"]))
    print(f"{len(files)} {args.split} calls", file=sys.stderr)
    respira = str(Path(sys.executable).parent / "respira")
    model = args.model or str(args.run / "model.respira")
    detect = [respira, "detect", *files, "--model", model, "-o", str(out / "detect")]
    subprocess.run(detect + (["--no-gate"] if args.no_gate else []), check=True, stdout=subprocess.DEVNULL)

    def evaluate(manifest: Path, name: str, zone: int, review: int = 0) -> dict:
        subprocess.run([respira, "evaluate-events", str(out / "detect" / "events.csv"), str(manifest),
                        "-o", str(out / name), "--ignore-around", str(zone), "--review", str(review)],
                       check=True, stdout=subprocess.DEVNULL)
        return json.loads((out / name / "metrics.json").read_text())

    metrics = {zone: evaluate(manifest, f"eval{zone}", zone, review=10 if zone == 10 else 0) for zone in (10, 20)}
    top_call = metrics[10]["false_alarm_files"][0]["file"] if metrics[10]["false_alarm_files"] else None
    rest = pd.read_csv(manifest)
    rest[rest["path"] != top_call].to_csv(out / "without_top_call.csv", index=False)
    without = evaluate(out / "without_top_call.csv", "eval10_without_top_call", 10)
    keys = ("sensitivity", "precision", "false_alarms_per_hour", "threshold", "sensitivity_at_1_fa_per_hour",
            "sensitivity_at_2_fa_per_hour", "hours", "annotated_events", "detections")
    print(f"outputs in {out} (eval10: the 10-s zones of the definition; eval10/review/index.html: "
          "spectrograms of the top false alarms and the misses)", file=sys.stderr)
    print(json.dumps({"calls": len(files), "split": args.split, "gate": not args.no_gate, "model": model}
                     | {k: metrics[10].get(k) for k in keys} | rates(metrics[10])
                     | {"wider_zone": {"ignore_around_s": 20, "hours_outside_ignore_zones": metrics[20]["hours_outside_ignore_zones"]}
                        | rates(metrics[20])}
                     | {"without_top_call": {"call": top_call and Path(top_call).stem, "calls": len(files) - 1} | rates(without)}))


if __name__ == "__main__":
    main()
