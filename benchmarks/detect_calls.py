"""Cough detection accuracy on the whole phone calls of covid19-cough-uncut that a model never saw.

Takes a training run of configs/cough.yaml (its manifest.csv says which calls were in the test
split), runs `respira detect` on those calls with the run's bundle (or the built-in `cough`
model trained from the same config), then `respira evaluate-events` against the annotated
coughs. Last stdout line: one JSON object with sensitivity, false alarms per hour and the
sensitivity at 1 and 2 false alarms per hour.

    .venv/bin/python benchmarks/detect_calls.py --run runs/cough [--model cough] [--no-gate]
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


def test_calls(run_dir: Path, calls: Path, out: Path) -> Path:
    """A manifest of the annotated coughs of the calls in the run's test split."""
    from respira.data import import_dataset, write_manifest

    run = pd.read_csv(run_dir / "manifest.csv")
    held_out = set(run.loc[(run["split"] == "test") & (run["dataset"] == "covid19-cough-uncut"), "subject"])
    if not held_out:
        sys.exit(f"{run_dir / 'manifest.csv'} has no covid19-cough-uncut calls in its test split")
    events = import_dataset("covid19-cough-uncut", calls)
    manifest = out / "test_calls.csv"
    write_manifest(events[events["subject"].isin(held_out)].reset_index(drop=True), manifest)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a run directory of configs/cough.yaml")
    parser.add_argument("--model", help="bundle or built-in name (default: RUN/model.respira)")
    parser.add_argument("--calls", type=Path, default=CALLS)
    parser.add_argument("--out", type=Path, help="keep the outputs here (default: a temp folder)")
    parser.add_argument("--no-gate", action="store_true", help="score every window (checks the gate loses nothing)")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="respira-calls-"))
    out.mkdir(parents=True, exist_ok=True)
    manifest = test_calls(args.run, args.calls, out)
    files = sorted(set(pd.read_csv(manifest)["path"]))
    print(f"{len(files)} held-out calls", file=sys.stderr)
    respira = str(Path(sys.executable).parent / "respira")
    model = args.model or str(args.run / "model.respira")
    detect = [respira, "detect", *files, "--model", model, "-o", str(out / "detect")]
    subprocess.run(detect + (["--no-gate"] if args.no_gate else []), check=True, stdout=subprocess.DEVNULL)
    subprocess.run([respira, "evaluate-events", str(out / "detect" / "events.csv"), str(manifest),
                    "-o", str(out / "eval"), "--ignore-around", "10"], check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    keys = ("sensitivity", "precision", "false_alarms_per_hour", "threshold", "sensitivity_at_1_fa_per_hour",
            "sensitivity_at_2_fa_per_hour", "hours", "annotated_events", "detections")
    print(f"outputs in {out}", file=sys.stderr)
    print(json.dumps({"calls": len(files), "gate": not args.no_gate, "model": model} | {k: metrics.get(k) for k in keys}))


if __name__ == "__main__":
    main()
