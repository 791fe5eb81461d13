"""Long-recording detector speed and memory: `respira detect`'s code path on a quiet night and on
an hour of continuous sound, against the same windows scored naively (no gate), in one run.

Usage: python benchmarks/detect.py [--model NAME_OR_BUNDLE] [--backend torch|onnx] [--hours 8]
       [--hours-continuous 1] [--naive-minutes 10] [--repeats 2] [--threads 2] [--audio-dir DIR]
       python benchmarks/detect.py --sweep   (windows/s of compact_cnn sizes instead)

Cases, each run `--repeats` times in a fresh subprocess (so that its peak RSS, VmHWM, is its own):
  quiet:      `respira.testing.write_night` (pink bed at -50 dBFS, ~10 coughs/hour), `--hours` long;
  continuous: speech-like babble + coughs over a noise bed, never quiet, so the gate stays open.
Each goes through `respira.detect.job.run_detect` (what `respira detect` calls: decoding, gate,
features, model, events, progress files and every output) with the model from
`respira.inference.load_model`, timed after the model is loaded and has scored one window
(`model_load_s`). The reference (naive): every window on
the detector's hop grid of the first `--naive-minutes` of each file scored by
`Model.score_windows` in batches, no gate, extrapolated per audio second. `--compare-minutes` of
the continuous file are also scored naively with the other backend (windows/s of both).
Default model: the built-in `cough` when installed, else an untrained bundle with configs/cough.yaml's
model, features and clip length (scores meaningless, speed representative).

Times are the best of the repeats, peak RSS the largest. Progress on stderr; the last stdout line
is one JSON object (keys in `main`). The machine may be shared: the load average is reported,
and with it `cpu_rtf_*` (audio seconds per CPU second), which load disturbs less than wall time.
PyTorch's OpenMP threads spin while they wait; on a loaded machine that makes 2 threads several
times slower than 1, so set OMP_WAIT_POLICY=PASSIVE there (recorded as `omp_wait_policy`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 16000
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cough.yaml"
SWEEP = [  # (compact_cnn channels, n_mels, clip seconds): the cough config first, then smaller ones
    ((32, 64, 128, 128), 64, 2.0), ((24, 48, 96, 96), 64, 2.0), ((16, 32, 64, 64), 64, 2.0),
    ((32, 64, 128), 64, 2.0), ((32, 64, 128, 128), 40, 2.0), ((16, 32, 64, 64), 40, 2.0),
    ((32, 64, 128, 128), 64, 1.0), ((16, 32, 64, 64), 64, 1.0),
]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- audio and model ------------------------------------------------------------------------


def write_continuous(path: Path, *, hours: float, seed: int = 0, coughs_per_minute: float = 2.0) -> None:
    """Babble (-20 dBFS peak) with coughs (-14 dBFS peak) over a -45 dBFS pink bed, 16-bit WAV, made a minute at a time."""
    import soundfile as sf

    from respira.testing import babble, cough, noise_bed

    total, block = round(hours * 3600 * SR), 60 * SR
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        for k, b0 in enumerate(range(0, total, block)):
            rng = np.random.default_rng([seed, k])
            n = min(block, total - b0)
            y = noise_bed(sample_rate=SR, rng=rng, duration_s=n / SR, level_db=-45.0).astype(np.float64)
            y += 10 ** (-20 / 20) * babble(sample_rate=SR, rng=rng, duration_s=n / SR)
            for _ in range(rng.poisson(coughs_per_minute * n / (60 * SR))):
                c = cough(sample_rate=SR, rng=rng)[:n]
                at = int(rng.integers(0, n - len(c) + 1))
                y[at: at + len(c)] += 10 ** (-14 / 20) * c
            f.write(np.clip(y, -0.99, 0.99).astype(np.float32))


def audio_files(folder: Path, *, hours_quiet: float, hours_continuous: float) -> dict[str, Path]:
    """The two cases' WAV files in `folder`, made unless already there (named by their length)."""
    from respira.testing import write_night

    folder.mkdir(parents=True, exist_ok=True)
    files = {"quiet": folder / f"night-{hours_quiet:g}h.wav", "continuous": folder / f"continuous-{hours_continuous:g}h.wav"}
    makers = {"quiet": lambda p: write_night(p, hours=hours_quiet, sample_rate=SR, coughs_per_hour=10, seed=0),
              "continuous": lambda p: write_continuous(p, hours=hours_continuous)}
    for case, path in files.items():
        if not path.is_file():
            _log(f"writing {path} ...")
            partial = path.with_name(path.stem + ".partial.wav")
            makers[case](partial)
            os.replace(partial, path)
    return files


def fresh_bundle(path: Path, overrides: tuple[str, ...] = ()) -> Path:
    """An untrained bundle with configs/cough.yaml's model, features and clip length (plus
    `--set`-style overrides), built as training builds it."""
    import torch

    from respira.bundle import BundleMeta, save_bundle
    from respira.config import load_config
    from respira.train.loop import build, model_spec

    config = load_config(CONFIG, overrides)
    spec = model_spec(config, 2)
    torch.manual_seed(0)
    meta = BundleMeta(task="classification", classes=(config.data.negative, config.data.positive),
                      positive=config.data.positive, features=config.features.to_dict(), model=spec,
                      clip_s=config.data.clip_s)
    save_bundle(path, [build(spec).eval()], meta)
    return path


# --- child processes: one measurement each ---------------------------------------------------


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Counted:
    """The model, counting the windows the detector has it score."""

    def __init__(self, model) -> None:
        self.model, self.windows = model, 0

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        self.windows += len(windows)
        return self.model.score_windows(windows)

    def score_strip(self, y: np.ndarray, *, hop: int, n: int, **options) -> np.ndarray:
        self.windows += n
        return self.model.score_strip(y, hop=hop, n=n, **options)


def child(spec: dict) -> dict:
    """One measurement: {"kind": "detect" | "naive", "file", "model", "backend", "threads", ...}."""
    import torch

    torch.set_num_threads(spec["threads"])
    from respira.detect.config import detect_config
    from respira.export import load_exported
    from respira.inference import load_model

    start = time.perf_counter()
    model = load_exported(spec["model"]) if spec["backend"] == "onnx" else load_model(spec["model"])
    model.score_windows(np.zeros((1, model.clip_samples), np.float32))  # first-call set-up, timed with the loading
    load_s = time.perf_counter() - start
    cfg = detect_config(model)
    wall, cpu = time.perf_counter(), _cpu_s()
    if spec["kind"] == "detect":
        from respira.detect.job import run_detect

        counted = _Counted(model)
        (result,) = run_detect([spec["file"]], counted, cfg, spec["out"], model=spec["model"], resume=False).results
        extra = {"audio_s": result.duration_s, "active_s": result.active_s, "events": len(result.events),
                 "windows": len(result.scores), "windows_scored": counted.windows}
    else:
        from respira import audio

        y = audio.load(spec["file"], sample_rate=model.sample_rate, end_s=spec["seconds"])
        win, hop = model.clip_samples, round(cfg.hop_s * model.sample_rate)
        starts = np.arange(0, max(1, len(y) - win + hop), hop)  # the detector's grid, the last window zero-padded
        view = np.lib.stride_tricks.sliding_window_view(np.concatenate([y, np.zeros(win, np.float32)]), win)
        for i in range(0, len(starts), cfg.batch_size):
            model.score_windows(view[starts[i: i + cfg.batch_size]])
        extra = {"audio_s": len(y) / model.sample_rate, "windows": len(starts)}
    return {"wall_s": time.perf_counter() - wall, "cpu_s": _cpu_s() - cpu, "peak_rss_mb": _peak_rss_mb(),
            "load_s": load_s, **extra}


def measure(spec: dict, *, repeats: int) -> dict:
    """Run `spec` in `repeats` fresh subprocesses: the fastest run, with the largest peak RSS of all."""
    runs = []
    for i in range(repeats):
        load = os.getloadavg()[0]
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"{spec['kind']} of {spec['file']} failed (exit {proc.returncode})")
        r = {**json.loads(proc.stdout.strip().splitlines()[-1]), "load": load}
        runs.append(r)
        _log(f"  {spec['kind']} {Path(spec['file']).name} ({spec['backend']}) run {i + 1}/{repeats}: "
             f"{r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s cpu, rtf {r['audio_s'] / r['wall_s']:.0f}, "
             f"peak {r['peak_rss_mb']:.0f} MB, model load {r['load_s']:.1f} s, load avg {load:.1f}")
    best = min(runs, key=lambda r: r["wall_s"])
    return {**best, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


# --- the runs ---------------------------------------------------------------------------------


def sweep(args: argparse.Namespace) -> None:
    """Windows/s of compact_cnn sizes through `Model.score_strip` (the detector's path), 1 and --threads threads."""
    import torch

    from respira.inference import load_model

    rows = []
    with tempfile.TemporaryDirectory(prefix="respira-bench-sweep-") as tmp:
        for channels, n_mels, clip_s in SWEEP:
            overrides = (f"model.params={{channels: {list(channels)}}}", f"features.n_mels={n_mels}",
                         f"data.clip_s={clip_s}")
            model = load_model(fresh_bundle(Path(tmp) / "sweep.respira", overrides))
            hop, n = SR // 4, 64
            y = (0.05 * np.random.default_rng(0).standard_normal((n - 1) * hop + model.clip_samples)).astype(np.float32)
            row = {"channels": list(channels), "n_mels": n_mels, "clip_s": clip_s,
                   "params": sum(p.numel() for p in model.ensemble.parameters())}
            for threads in sorted({1, args.threads}):
                torch.set_num_threads(threads)
                model.score_strip(y, hop=hop, n=n)  # warm-up
                best = min(_timed(lambda: model.score_strip(y, hop=hop, n=n)) for _ in range(args.repeats + 1))
                row[f"windows_per_s_{threads}t"] = round(n / best, 1)
                row[f"rtf_all_windows_{threads}t"] = round(n / best * hop / SR, 1)  # every window scored (gate open)
            _log(json.dumps(row))
            rows.append(row)
    print(json.dumps({"sweep": rows, "hop_s": 0.25, "load_avg": [round(v, 2) for v in os.getloadavg()],
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="built-in name or bundle path [default: cough if installed, else a fresh model]")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch", help="as `respira detect` (torch)")
    parser.add_argument("--hours", type=float, default=8.0, help="length of the quiet night")
    parser.add_argument("--hours-continuous", type=float, default=1.0)
    parser.add_argument("--naive-minutes", type=float, default=10.0, help="audio scored naively, per file")
    parser.add_argument("--compare-minutes", type=float, default=1.0, help="audio scored naively by both backends (0: skip)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--audio-dir", type=Path, help="keep (and reuse) the test audio here [default: a temp folder]")
    parser.add_argument("--sweep", action="store_true", help="measure compact_cnn sizes instead (windows/s)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.sweep:
        return sweep(args)

    from respira.bundle import builtin_names

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="respira-bench-detect-") as tmp:
        tmp = Path(tmp)
        builtin = args.model is None and "cough" in builtin_names()
        model = args.model or ("cough" if builtin else str(fresh_bundle(tmp / "fresh-cough.respira")))
        name = args.model or ("cough" if builtin else "fresh compact_cnn (configs/cough.yaml)")
        files = audio_files(args.audio_dir or tmp / "audio", hours_quiet=args.hours, hours_continuous=args.hours_continuous)
        common = {"model": model, "backend": args.backend, "threads": args.threads}
        r: dict[str, dict] = {}
        for case, path in files.items():
            _log(f"{case}: {path.name} with {name} ({args.backend}, {args.threads} threads)")
            r[case] = measure({**common, "kind": "detect", "file": str(path), "out": str(tmp / f"out-{case}")},
                              repeats=args.repeats)
            r[f"naive_{case}"] = measure({**common, "kind": "naive", "file": str(path), "seconds": 60 * args.naive_minutes},
                                         repeats=args.repeats)
        if args.compare_minutes > 0:
            for backend in ("torch", "onnx"):
                r[f"compare_{backend}"] = measure({**common, "backend": backend, "kind": "naive", "seconds": 60 * args.compare_minutes,
                                                   "file": str(files["continuous"])}, repeats=args.repeats)
    rtf = {case: m["audio_s"] / m["wall_s"] for case, m in r.items()}
    out = {
        "rtf_quiet": round(rtf["quiet"], 1),
        "rtf_continuous": round(rtf["continuous"], 1),
        "peak_rss_mb": round(max(r["quiet"]["peak_rss_mb"], r["continuous"]["peak_rss_mb"]), 1),
        "peak_rss_mb_quiet": round(r["quiet"]["peak_rss_mb"], 1),
        "peak_rss_mb_continuous": round(r["continuous"]["peak_rss_mb"], 1),
        "naive_rtf_quiet": round(rtf["naive_quiet"], 1),
        "naive_rtf_continuous": round(rtf["naive_continuous"], 1),
        "speedup_vs_naive_quiet": round(rtf["quiet"] / rtf["naive_quiet"], 2),
        "speedup_vs_naive_continuous": round(rtf["continuous"] / rtf["naive_continuous"], 2),
        "hours_quiet": args.hours,
        "hours_continuous": args.hours_continuous,
        "model": name,
        "backend": args.backend,
        "threads": args.threads,
        "cpu_rtf_quiet": round(r["quiet"]["audio_s"] / r["quiet"]["cpu_s"], 1),
        "cpu_rtf_continuous": round(r["continuous"]["audio_s"] / r["continuous"]["cpu_s"], 1),
        "windows_scored_quiet": r["quiet"]["windows_scored"],
        "windows_scored_continuous": r["continuous"]["windows_scored"],
        "windows_continuous": r["continuous"]["windows"],
        "model_load_s": round(r["quiet"]["load_s"], 2),
        **{f"naive_windows_per_s_{b}": round(r[f"compare_{b}"]["windows"] / r[f"compare_{b}"]["wall_s"], 1)
           for b in ("torch", "onnx") if f"compare_{b}" in r},
        "load_avg": [round(v, 2) for v in load_before],
        "load_avg_end": [round(v, 2) for v in os.getloadavg()],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
