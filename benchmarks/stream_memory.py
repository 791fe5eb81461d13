"""Peak memory of `respira.audio.stream` over a long recording, against a bare interpreter.

Writes a long 16 kHz mono 16-bit WAV (quiet noise with a loud burst every 20 minutes) into a
temporary folder, chunk by chunk, then in a child process streams it in 60 s blocks computing
a running RMS. Reports the child's peak RSS next to that of a child that only imports numpy
and soundfile (the reference), so the ratio means the same on a noisy machine. Progress goes
to stderr; the last line of stdout is one JSON object.

    python benchmarks/stream_memory.py [--hours 10]
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
import soundfile as sf

SR = 16000
ROOT = Path(__file__).resolve().parents[1]

STREAM = """
import json, sys
import numpy as np
from respira.audio import stream

total, energy = 0, 0.0
for i, block in enumerate(stream(sys.argv[1], sr=16000, block_s=60.0)):
    total += len(block)
    energy += float(np.dot(block.astype(np.float64), block))
    if i % 60 == 59:
        print(f"  streamed {total / 16000 / 3600:.0f} h, running rms {(energy / total) ** 0.5:.4f}", file=sys.stderr, flush=True)
print(json.dumps({"samples": total, "rms": (energy / total) ** 0.5}))
"""

BASELINE = "import numpy, soundfile"


def write_recording(path: Path, *, hours: float, seed: int = 0) -> int:
    """Write `hours` of quiet noise with a 0.5 s burst every 20 min, one minute at a time; returns samples."""
    rng = np.random.default_rng(seed)
    minutes = round(hours * 60)
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        for minute in range(minutes):
            y = 0.01 * rng.standard_normal(60 * SR)
            if minute % 20 == 0:
                y[SR : SR + SR // 2] += 0.5 * rng.standard_normal(SR // 2)
            f.write(np.clip(y, -1, 1).astype(np.float32))
            if minute % 60 == 59:
                print(f"  wrote {(minute + 1) / 60:.0f} h", file=sys.stderr, flush=True)
    return minutes * 60 * SR


def child_peak_rss_mb(code: str, *args: str) -> tuple[float, float, str]:
    """Run `code` in a fresh interpreter; (peak RSS of all children so far in MB, seconds, stdout)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env, check=True)
    seconds = time.perf_counter() - start
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, seconds, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=10.0, help="length of the test recording")
    args = parser.parse_args()

    # RUSAGE_CHILDREN keeps the maximum over finished children: measure the small one first.
    baseline_mb, _, _ = child_peak_rss_mb(BASELINE)
    with tempfile.TemporaryDirectory(prefix="respira-bench-") as tmp:
        path = Path(tmp) / "long.wav"
        print(f"writing {args.hours:g} h to {path}", file=sys.stderr, flush=True)
        samples = write_recording(path, hours=args.hours)
        print(f"  {path.stat().st_size / 1e9:.2f} GB; streaming", file=sys.stderr, flush=True)
        peak_mb, seconds, out = child_peak_rss_mb(STREAM, str(path))
    result = json.loads(out.strip().splitlines()[-1])
    if result["samples"] != samples:
        raise SystemExit(f"streamed {result['samples']} samples, wrote {samples}")
    print(
        json.dumps(
            {
                "hours": args.hours,
                "peak_rss_mb": round(peak_mb, 1),
                "baseline_rss_mb": round(baseline_mb, 1),
                "ratio_vs_baseline": round(peak_mb / baseline_mb, 2),
                "seconds": round(seconds, 1),
                "realtime_factor": round(samples / SR / seconds, 1),
                "rms": round(result["rms"], 5),
            }
        )
    )


if __name__ == "__main__":
    main()
