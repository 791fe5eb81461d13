"""Clip scoring speed of Model.predict_proba: the torch backend against the onnx backend, in one process.

Usage: python benchmarks/predict.py [--model NAME_OR_BUNDLE] [--clips 200] [--seconds 3] [--repeats 3]
Default model: the built-in `cough` when installed, else a fresh (untrained) compact_cnn bundle
like configs/cough.yaml's (64 log-mels, 2-s windows) in a temporary folder. Clips are seeded
noise plus tones. Progress goes to stderr; the last stdout line is one JSON object:
{"model", "n_clips", "clip_s", "clips_per_s_torch", "clips_per_s_onnx", "onnx_vs_torch", "max_abs_diff", "threads"}.
Times are the best of ``repeats`` runs after a warm-up; the ratio is what matters on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from respira.bundle import BundleMeta, builtin_names, save_bundle
from respira.export import load_exported
from respira.features import FeatureConfig
from respira.inference import Model, load_model
from respira.models import build_model


def fresh_bundle(folder: Path) -> Path:
    """An untrained compact_cnn cough-vs-other bundle with the default features."""
    torch.manual_seed(0)
    cfg = FeatureConfig()
    params = {"n_classes": 2, "in_channels": cfg.channels, "n_bins": cfg.n_mels}
    meta = BundleMeta(task="classification", classes=("other", "cough"), positive="cough", features=cfg.to_dict(),
                      model={"name": "compact_cnn", "params": params}, clip_s=2.0)
    path = folder / "fresh.respira"
    save_bundle(path, [build_model("compact_cnn", **params).eval()], meta)
    return path


def make_clips(n: int, seconds: float, sr: int, seed: int = 0) -> list[np.ndarray]:
    """n clips of seeded noise plus a tone, float32 [seconds * sr] each."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return [(0.05 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t)).astype(np.float32)
            for _ in range(n)]


def best_of(fn: Callable[[], np.ndarray], repeats: int, name: str) -> tuple[float, np.ndarray]:
    fn()  # warm-up
    best, result = float("inf"), None
    for i in range(repeats):
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        print(f"{name} run {i + 1}/{repeats}: {elapsed:.3f} s", file=sys.stderr)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="built-in name or bundle path [default: cough if installed, else a fresh model]")
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="respira-bench-") as tmp:
        source = args.model or ("cough" if "cough" in builtin_names() else fresh_bundle(Path(tmp)))
        name = str(args.model or ("cough" if source == "cough" else "fresh compact_cnn"))
        backends: dict[str, Model] = {"torch": load_model(source), "onnx": load_exported(source)}
    model = backends["torch"]
    print(f"{name}: {args.clips} clips of {args.seconds:g} s, windows of {model.clip_s:g} s", file=sys.stderr)
    clips = make_clips(args.clips, args.seconds, model.sample_rate)
    seconds, outputs = {}, {}
    for backend, m in backends.items():
        seconds[backend], outputs[backend] = best_of(lambda: m.predict_proba(clips, batch_size=args.batch_size),
                                                     args.repeats, backend)
    print(json.dumps({
        "model": name,
        "n_clips": args.clips,
        "clip_s": args.seconds,
        "clips_per_s_torch": round(args.clips / seconds["torch"], 1),
        "clips_per_s_onnx": round(args.clips / seconds["onnx"], 1),
        "onnx_vs_torch": round(seconds["torch"] / seconds["onnx"], 2),
        "max_abs_diff": float(np.abs(outputs["torch"] - outputs["onnx"]).max()),
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
