"""`respira info`: a table of good files, one stderr line per bad file, exit code 1, --json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import respira.cli.info_cmd  # noqa: F401  (registers the command)
from respira import audio
from respira.cli.app import app

RESPIRA = Path(sys.executable).with_name("respira")


@pytest.fixture()
def mixed_folder(tmp_path: Path) -> Path:
    """Three good files (one silent) and three bad ones."""
    t = np.arange(16000 * 2) / 16000
    audio.write_wav(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * 440 * t), sample_rate=16000)
    sf.write(tmp_path / "stereo.flac", np.zeros((44100, 2)) + 0.1, 44100)
    audio.write_wav(tmp_path / "silent.wav", np.zeros(8000), sample_rate=16000)
    (tmp_path / "notes.wav").write_text("not audio at all\n")
    (tmp_path / "empty.mp3").write_bytes(b"")
    return tmp_path


GOOD = ["tone.wav", "stereo.flac", "silent.wav"]
BAD = ["notes.wav", "empty.mp3", "missing.ogg"]


def _run(folder: Path, monkeypatch, *extra: str):
    monkeypatch.chdir(folder)  # short relative names: the table does not fold them
    return CliRunner().invoke(app, ["info", *GOOD, *BAD, *extra])


def test_table_and_error_lines(mixed_folder, monkeypatch):
    result = _run(mixed_folder, monkeypatch)
    assert result.exit_code == 1
    for name in GOOD:
        assert name in result.stdout
    assert "2.00 s" in result.stdout and "44100 Hz" in result.stdout and "silent" in result.stdout
    error_lines = result.stderr.strip().splitlines()
    assert len(error_lines) == len(BAD)
    for line, name, reason in zip(error_lines, BAD, ["not audio", "empty file", "not found"]):
        assert name in line and reason in line
    assert "Traceback" not in result.output


def test_json(mixed_folder, monkeypatch):
    result = _run(mixed_folder, monkeypatch, "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout.strip().splitlines()[-1])
    files = {f["path"]: f for f in out["files"]}
    assert list(files) == GOOD
    assert files["tone.wav"] == {
        "path": "tone.wav",
        "duration_s": 2.0,
        "sample_rate": 16000,
        "channels": 1,
        "format": "WAV/PCM_16",
        "recovered": False,
        "declared_duration_s": None,
        "warnings": [],
    }
    assert (files["stereo.flac"]["channels"], files["stereo.flac"]["sample_rate"]) == (2, 44100)
    assert files["silent.wav"]["warnings"] == ["silent"]
    assert [e["path"] for e in out["errors"]] == BAD
    assert all(e["error"].startswith(e["path"] + ": ") for e in out["errors"])


def test_all_good_exits_zero(mixed_folder):
    result = CliRunner().invoke(app, ["info", str(mixed_folder / "tone.wav")])
    assert result.exit_code == 0 and "tone.wav" in result.stdout and not result.stderr


@pytest.mark.skipif(not RESPIRA.exists(), reason="the respira entry point is not installed beside this python")
def test_installed_command(mixed_folder):
    proc = subprocess.run(
        [str(RESPIRA), "info", *(str(mixed_folder / n) for n in GOOD + BAD), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out["files"]) == len(GOOD) and len(out["errors"]) == len(BAD)
