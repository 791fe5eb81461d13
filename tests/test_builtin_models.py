"""The built-in `cough` and `vocal` models: one answer from the Python API, the CLI and ONNX on
real clips, sensible answers on the data they were made for, and the bundled example night."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from respira.bundle import builtin_names
from respira.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.skipif(not {"cough", "vocal"} <= set(builtin_names()), reason="built-in models not installed")


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    return done.value.code


@pytest.fixture(scope="module")
def clips(shared_data):
    """20 real clips: 10 classes x 2 speakers of the nonverbal set, plus their labels."""
    root = shared_data / "nonverbal-vocalization"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())[:10]
    return [p for c in classes for p in sorted((root / c).glob("*.wav"))[:2]]


@pytest.mark.shared
@pytest.mark.parametrize("name", ["cough", "vocal"])
def test_api_cli_and_onnx_agree_on_real_clips(name, clips, tmp_path):
    from respira import load_model
    from respira.export import load_exported

    api = {r["file"]: r for r in load_model(name).predict([str(p) for p in clips])}
    onnx = {r["file"]: r for r in load_exported(name).predict([str(p) for p in clips])}
    assert run_cli("predict", name, *map(str, clips), "--format", "csv", "-o", str(tmp_path / "out.csv")) in (0, None)
    cli = pd.read_csv(tmp_path / "out.csv").set_index("file")
    assert len(api) == len(onnx) == len(cli) == 20
    for file, row in api.items():
        assert onnx[file]["label"] == row["label"] == cli.loc[file, "label"]
        assert onnx[file]["score"] == pytest.approx(row["score"], abs=1e-4)
        assert cli.loc[file, "score"] == pytest.approx(row["score"], abs=1e-4)
        for c, p in row["probabilities"].items():
            assert cli.loc[file, f"prob_{c}"] == pytest.approx(p, abs=1e-4)


@pytest.mark.shared
def test_cough_model_finds_the_coughs_of_a_folder(shared_data, tmp_path, capsys):
    folder = shared_data / "nonverbal-vocalization" / "coughing"
    assert run_cli("predict", "cough", str(folder), "--format", "csv", "-o", str(tmp_path / "c.csv")) in (0, None)
    rows = pd.read_csv(tmp_path / "c.csv")
    assert len(rows) == len(list(folder.glob("*.wav")))
    assert (rows["label"] == "cough").mean() >= 0.9


@pytest.mark.shared
@pytest.mark.parametrize("name", ["cough", "vocal"])
def test_evaluate_builtin_on_an_imported_manifest(name, shared_data, tmp_path):
    manifest = tmp_path / "nv.csv"
    assert run_cli("data", "import", "nonverbal", str(shared_data / "nonverbal-vocalization"), "-o", str(manifest)) in (0, None)
    assert run_cli("evaluate", name, str(manifest), "-o", str(tmp_path / "eval"), "--n-boot", "50") in (0, None)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["accuracy"] > (0.8 if name == "cough" else 0.5)
    assert (tmp_path / "eval" / "report.md").is_file()


def test_example_night_coughs_are_found(tmp_path):
    """The README's main job: every cough placed in the bundled night is detected, and little else."""
    truth = pd.read_csv(EXAMPLES / "night.truth.csv")
    assert run_cli("detect", str(EXAMPLES / "night.ogg"), "-o", str(tmp_path / "out")) in (0, None)
    events = pd.read_csv(tmp_path / "out" / "events.csv")
    hit = [((events["start"] < t.end + 0.5) & (events["end"] > t.start - 0.5)).any() for t in truth.itertuples()]
    assert np.mean(hit) >= 0.85
    inside = np.zeros(len(events), bool)
    for t in truth.itertuples():
        inside |= (events["start"] < t.end + 2.0).to_numpy() & (events["end"] > t.start - 2.0).to_numpy()
    assert (~inside).sum() <= 1  # the babble stretches are not coughs
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["coughs"] == len(events) and (tmp_path / "out" / "report.html").is_file()


def test_detect_refuses_a_model_for_another_task_before_writing_anything(tmp_path, capsys):
    assert run_cli("detect", str(EXAMPLES / "night.ogg"), "--model", "vocal", "-o", str(tmp_path / "out")) == 2
    assert "needs a binary classification model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
