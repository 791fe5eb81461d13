"""Shared fixtures: the real data beside the repo (skipped when absent) and a seeded RNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# Idle OpenMP threads yield instead of spinning (as the CLI sets it): on a busy 2-core machine
# spinning torch threads made the suite several times slower. Set before any test imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RESPIRA_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`; the test is skipped where it is absent (a user's machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture()
def bad_audio(tmp_path) -> tuple[Path, dict[str, str]]:
    """A folder of broken audio files and {file name: a reason its AudioError must give}; the files cut
    in half (half.wav, half.flac, half.mp3) are there too, but are read up to the cut, not refused."""
    d = tmp_path
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    sf.write(d / "good.wav", tone, 16000, subtype="PCM_16")
    wav = (d / "good.wav").read_bytes()
    (d / "empty.wav").write_bytes(b"")
    (d / "half.wav").write_bytes(wav[: 44 + (len(wav) - 44) // 2])
    (d / "header_only.wav").write_bytes(wav[:44])
    (d / "text.wav").write_text("this is not audio\n" * 20)
    sf.write(d / "zero_samples.wav", np.zeros(0, np.float32), 16000)
    (d / "empty.mp3").write_bytes(b"")
    (d / "random.mp3").write_bytes(np.random.default_rng(0).bytes(5000))
    sf.write(d / "good.flac", tone, 16000)
    flac = (d / "good.flac").read_bytes()
    (d / "half.flac").write_bytes(flac[: len(flac) // 2])
    sf.write(d / "good.mp3", tone, 16000)
    mp3 = (d / "good.mp3").read_bytes()
    (d / "half.mp3").write_bytes(mp3[: len(mp3) // 2])
    # a FLAC whose STREAMINFO claims 49 hours: total samples are the low 36 bits of bytes 18..26
    header = int.from_bytes(flac[18:26], "big")
    header = (header & ~((1 << 36) - 1)) | (49 * 3600 * 16000)
    (d / "absurd.flac").write_bytes(flac[:18] + header.to_bytes(8, "big") + flac[26:])
    (d / "folder.wav").mkdir()
    return d, {
        "empty.wav": "empty file",
        "header_only.wav": "truncated",
        "text.wav": "not audio",
        "zero_samples.wav": "no audio samples",
        "empty.mp3": "empty file",
        "random.mp3": "not a recognised audio format",
        "absurd.flac": "48 h limit",
        "folder.wav": "directory",
        "missing.wav": "not found",
    }
