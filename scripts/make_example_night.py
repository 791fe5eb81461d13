"""Build the bundled example night `examples/night.ogg` from CC0 cough clips.

A few minutes of a quiet bedroom-like noise bed (synthetic) with real induced coughs from the
covid19-cough data set (CC0 1.0) placed at known times, plus stretches of synthetic speech-like
babble that must not count as coughs. Writes `examples/night.ogg` (16 kHz mono Vorbis) and
`examples/night.truth.csv` (file,start,end,label: where each cough clip was placed; the
cough's own extent from its energy envelope).

    .venv/bin/python scripts/make_example_night.py --data ../shared/data/covid19-cough
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from respira.audio import load
from respira.errors import AudioError
from respira.testing import babble, noise_bed

SR = 16000


def active_extent(y: np.ndarray, *, sr: int, floor_db: float = -25.0) -> tuple[float, float]:
    """Start and end (s) of the part of `y` within `floor_db` of its loudest 10-ms frame."""
    hop = sr // 100
    frames = np.lib.stride_tricks.sliding_window_view(y, hop)[::hop]
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    on = np.flatnonzero(db > db.max() + floor_db)
    return on[0] * hop / sr, (on[-1] + 1) * hop / sr


def pick_clips(data: Path, n: int, seed: int) -> list[Path]:
    """`n` readable clips, half from Telegram (48 kHz) and half from the call centre (8 kHz)."""
    meta = json.loads((data / "metadata.json").read_text())
    rng = np.random.default_rng(seed)
    picked = []
    for source in ("telegram", "call-center"):
        names = sorted(r["filename"] for r in meta if r["source"] == source)
        readable = [data / "raw" / name for name in rng.permutation(names)
                    if (data / "raw" / name).stat().st_size > 8000]
        picked += readable[: n // 2]
    return picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/covid19-cough"))
    parser.add_argument("--out", type=Path, default=Path("examples"))
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--coughs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    total = int(args.minutes * 60 * SR)
    night = noise_bed(sample_rate=SR, rng=rng, duration_s=args.minutes * 60, level_db=-58.0).astype(np.float32)

    # Speech-like babble in two stretches (someone talking in the next room).
    for t0 in (0.3, 0.7):
        start = int(t0 * total)
        talk = babble(sample_rate=SR, rng=rng, duration_s=12.0) * 10 ** (-30 / 20)
        night[start : start + len(talk)] += talk[: total - start]

    rows = []
    clips = pick_clips(args.data, args.coughs, args.seed)
    slots = np.linspace(0.08, 0.92, len(clips)) * args.minutes * 60
    for path, at in zip(clips, slots):
        try:
            y = load(path, sample_rate=SR)
        except AudioError as e:
            print(f"skipped: {e}")
            continue
        y = y / (np.abs(y).max() + 1e-9) * 10 ** (-6 / 20)
        on, off = active_extent(y, sr=SR)
        begin = int(at * SR)
        seg = y[: total - begin]
        night[begin : begin + len(seg)] += seg
        rows.append({"file": "night.ogg", "start": round(at + on, 3), "end": round(at + off, 3),
                     "label": "cough", "clip": path.name})

    args.out.mkdir(parents=True, exist_ok=True)
    night = np.clip(night, -1, 1)
    with sf.SoundFile(args.out / "night.ogg", "w", SR, 1, format="OGG", subtype="VORBIS", compression_level=0.8) as f:
        for i in range(0, len(night), SR):  # libsndfile's Vorbis encoder crashes on very large writes
            f.write(night[i : i + SR])
    pd.DataFrame(rows).to_csv(args.out / "night.truth.csv", index=False)
    print(f"wrote {args.out / 'night.ogg'} ({args.minutes:g} min, {len(rows)} coughs)")


if __name__ == "__main__":
    main()
