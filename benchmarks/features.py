"""Log-mel speed against librosa on 1 hour of 16 kHz audio, in one process.

Usage: python benchmarks/features.py [--seconds 3600] [--repeats 3]
Progress goes to stderr; the last stdout line is one JSON object:
{"audio_s", "respira_s", "librosa_s", "speedup_vs_librosa", "max_abs_diff_db", "threads"}.
Times are the best of ``repeats`` runs, the two alternating; the ratio is what matters on
a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import librosa
import numpy as np
import torch

from respira.features import AMIN, FeatureConfig, log_mel


def make_audio(seconds: int, sr: int, seed: int = 0) -> np.ndarray:
    """Seeded noise plus tones whose pitch changes every 10 s, float32 [seconds * sr]."""
    rng = np.random.default_rng(seed)
    n = seconds * sr
    y = 0.05 * rng.standard_normal(n, dtype=np.float32)
    block = 10 * sr
    t = np.arange(block, dtype=np.float32) / sr
    for start in range(0, n, block):
        f0 = rng.uniform(100.0, 3000.0)
        stop = min(n, start + block)
        y[start:stop] += 0.3 * np.sin(2 * np.pi * f0 * t[: stop - start])
    return y


def librosa_log_mel(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    S = librosa.feature.melspectrogram(
        y=y, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.win_length, window="hann", center=True, pad_mode="constant", power=2.0,
        n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, htk=False, norm="slaney",
    )
    return librosa.power_to_db(S, ref=1.0, amin=AMIN, top_db=cfg.top_db)


def best_of_interleaved(
    runs: dict[str, Callable[[], object]], repeats: int
) -> dict[str, tuple[float, object]]:
    """name -> (best seconds, last result); the contenders alternate, so load spikes hit both."""
    best: dict[str, tuple[float, object]] = {name: (float("inf"), None) for name in runs}
    for i in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            result = fn()
            elapsed = time.perf_counter() - start
            best[name] = (min(best[name][0], elapsed), result)
            print(f"{name} run {i + 1}/{repeats}: {elapsed:.3f} s", file=sys.stderr)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    cfg = FeatureConfig()
    print(f"making {args.seconds} s of audio at {cfg.sample_rate} Hz", file=sys.stderr)
    y = make_audio(args.seconds, cfg.sample_rate)
    log_mel(y[: cfg.sample_rate], cfg)  # warm-ups on 1 s: the cached extractor, librosa's caches
    librosa_log_mel(y[: cfg.sample_rate], cfg)

    best = best_of_interleaved(
        {"respira": lambda: log_mel(y, cfg), "librosa": lambda: librosa_log_mel(y, cfg)}, args.repeats
    )
    (respira_s, ours), (librosa_s, ref) = best["respira"], best["librosa"]
    diff = float(np.abs(ours.numpy() - ref).max())
    print(json.dumps({
        "audio_s": args.seconds,
        "respira_s": round(respira_s, 4),
        "librosa_s": round(librosa_s, 4),
        "speedup_vs_librosa": round(librosa_s / respira_s, 2),
        "max_abs_diff_db": diff,
        "threads": threads,
    }))


if __name__ == "__main__":
    main()
