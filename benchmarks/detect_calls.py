"""Cough detection accuracy on the whole phone calls of covid19-cough-uncut that a model never saw.

The calls are the test split (or `--split val`) of configs/cough.yaml: its split (method hash)
puts each call on the side that a hash of (seed, call) alone decides, so the package's split
function on the calls gives the very calls `respira train configs/cough.yaml` holds out. With
`--run`, the calls come from RUN/manifest.csv instead, and the run's bundle is the default model
(otherwise the built-in `cough`, trained from the same config).

Mixed calls: `respira detect` on the calls as they are (mixed to mono), then `respira
evaluate-events` against the annotated coughs. Last stdout line: one JSON object with
sensitivity, false alarms per hour, the sensitivity at 1, 2, 5, 10 and 20 false alarms per hour
and their mean (one number to compare models by); `wider_zone` repeats those with 20-s zones, a
diagnostic of unannotated coughs just beyond the 10-s zones (callers who keep coughing), and
`without_top_call` leaves out the one call of the highest-scoring false alarm, to show how much a
single call decides the low end. OUT/eval10/review/index.html shows the spectrograms of the 10
highest-scoring false alarms and of 10 missed coughs, with the annotations and detections around them.

Sides: each call split into its caller's and operator's sides (the covid19-cough-uncut importer
with `sides`, into the `--sides` folder, whose files later runs reuse), `respira detect` on both,
`respira evaluate-events` grouped by side. `sensitivity_at_fa_per_hour_operator` pairs the
sensitivity on the callers' annotated coughs with the false alarms per hour of operator speech
alone, where every detection is a false alarm; `sides` adds the operating point and the callers'
false alarms per hour outside the ±10-s zones (callers' speech and their unannotated coughs).
OUT/sides10/review/index.html shows the top false alarms and misses there.

    .venv/bin/python benchmarks/detect_calls.py [--run runs/cough] [--model cough] [--no-gate] [--split val]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from respira.data.importers.covid import SIDES_CACHE

ROOT = Path(__file__).resolve().parents[1]
CALLS = ROOT.parent / "shared" / "data" / "covid19-cough-uncut"
CONFIG = ROOT / "configs" / "cough.yaml"


def held_out(events: pd.DataFrame, *, split: str, run: Path | None) -> set[str]:
    """The calls (subjects) of `events` in `split`: those of RUN/manifest.csv, or of configs/cough.yaml's split."""
    if run is not None:
        table = pd.read_csv(run / "manifest.csv")
        calls = set(table.loc[(table["split"] == split) & (table["dataset"] == "covid19-cough-uncut"), "subject"])
        where = run / "manifest.csv"
    else:
        from respira.config import load_config
        from respira.train.dataset import subjects_in_split

        calls = subjects_in_split(load_config(CONFIG), split) & set(events["subject"])
        where = CONFIG
    if not calls:
        sys.exit(f"{where} puts no covid19-cough-uncut calls in its {split} split")
    return calls


def rates(metrics: dict) -> dict:
    """The sensitivity at each false-alarm rate of evaluate-events and their mean."""
    at = metrics["sensitivity_at_fa_per_hour"]
    return {"sensitivity_at_fa_per_hour": at, "mean_sensitivity_1_to_20_fa_per_hour": round(sum(at.values()) / len(at), 4)}


def sides_figures(metrics: dict) -> dict:
    """The figures of an evaluation of the calls' sides: against operator speech, and on the callers' sides."""
    caller, operator = metrics["groups"]["caller"], metrics["groups"]["operator"]
    return {
        "sensitivity_at_fa_per_hour_operator": metrics["sensitivity_at_fa_per_hour_of_negatives"],
        "sides": {
            "sensitivity": metrics["sensitivity"], "threshold": metrics["threshold"],
            "hours_operator": operator["hours"], "false_alarms_operator": operator["false_alarms"],
            "false_alarms_per_hour_operator": operator["false_alarms_per_hour"],
            "hours_caller_outside_ignore_zones": caller["hours_outside_ignore_zones"],
            "false_alarms_caller": caller["false_alarms"], "false_alarms_per_hour_caller": caller["false_alarms_per_hour"],
            "sensitivity_at_fa_per_hour_all_sides": metrics["sensitivity_at_fa_per_hour"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a run directory of configs/cough.yaml (default: its split, computed)")
    parser.add_argument("--model", help="bundle or built-in name (default: RUN/model.respira, or cough without --run)")
    parser.add_argument("--calls", type=Path, default=CALLS)
    parser.add_argument("--sides", type=Path, default=SIDES_CACHE, help="folder of the calls' sides, reused (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="keep the outputs here (default: a temp folder)")
    parser.add_argument("--no-gate", action="store_true", help="score every window (checks the gate loses nothing)")
    parser.add_argument("--split", choices=("test", "val"), default="test", help="which calls (default: test)")
    args = parser.parse_args()

    from respira.data import import_dataset, write_manifest

    out = args.out or Path(tempfile.mkdtemp(prefix="respira-calls-"))
    out.mkdir(parents=True, exist_ok=True)
    events = import_dataset("covid19-cough-uncut", args.calls)
    calls = held_out(events, split=args.split, run=args.run)
    manifest, sides_manifest = out / f"{args.split}_calls.csv", out / f"{args.split}_sides.csv"
    write_manifest(events[events["subject"].isin(calls)].reset_index(drop=True), manifest)
    sides = import_dataset("covid19-cough-uncut", args.calls, sides=args.sides)
    sides = sides[sides["subject"].isin(calls)].reset_index(drop=True)
    write_manifest(sides, sides_manifest)
    files = sorted(set(pd.read_csv(manifest)["path"]))
    print(f"{len(files)} {args.split} calls, {len(sides)} rows of their sides", file=sys.stderr)
    respira = str(Path(sys.executable).parent / "respira")
    model = args.model or (str(args.run / "model.respira") if args.run else "cough")

    def detect(paths: list[str], name: str) -> Path:
        command = [respira, "detect", *paths, "--model", model, "-o", str(out / name)]
        subprocess.run(command + (["--no-gate"] if args.no_gate else []), check=True, stdout=subprocess.DEVNULL)
        return out / name / "events.csv"

    def evaluate(events_csv: Path, manifest: Path, name: str, zone: int, review: int = 0) -> dict:
        subprocess.run([respira, "evaluate-events", str(events_csv), str(manifest), "-o", str(out / name),
                        "--ignore-around", str(zone), "--review", str(review)], check=True, stdout=subprocess.DEVNULL)
        return json.loads((out / name / "metrics.json").read_text())

    mixed = detect(files, "detect")
    metrics = {zone: evaluate(mixed, manifest, f"eval{zone}", zone, review=10 if zone == 10 else 0) for zone in (10, 20)}
    top_call = metrics[10]["false_alarm_files"][0]["file"] if metrics[10]["false_alarm_files"] else None
    rest = pd.read_csv(manifest)
    rest[rest["path"] != top_call].to_csv(out / "without_top_call.csv", index=False)
    without = evaluate(mixed, out / "without_top_call.csv", "eval10_without_top_call", 10)
    on_sides = evaluate(detect(sorted(set(sides["path"])), "detect_sides"), sides_manifest, "sides10", 10, review=10)
    keys = ("sensitivity", "precision", "false_alarms_per_hour", "threshold", "sensitivity_at_1_fa_per_hour",
            "sensitivity_at_2_fa_per_hour", "hours", "annotated_events", "detections")
    print(f"outputs in {out} (eval10: the mixed calls with the 10-s zones of the definition; sides10: the calls' "
          "sides; */review/index.html: spectrograms of the top false alarms and the misses)", file=sys.stderr)
    print(json.dumps({"calls": len(files), "split": args.split, "gate": not args.no_gate, "model": model,
                      "calls_from": str(args.run / "manifest.csv") if args.run else str(CONFIG.relative_to(ROOT))}
                     | {k: metrics[10].get(k) for k in keys} | rates(metrics[10])
                     | {"wider_zone": {"ignore_around_s": 20, "hours_outside_ignore_zones": metrics[20]["hours_outside_ignore_zones"]}
                        | rates(metrics[20])}
                     | {"without_top_call": {"call": top_call and Path(top_call).stem, "calls": len(files) - 1} | rates(without)}
                     | sides_figures(on_sides)))


if __name__ == "__main__":
    main()
