"""`respira predict`, `models`, `export` and `evaluate` through the real entry point (exit codes included)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest
from tiny_models import SR, tiny_bundle, tone_clip, write_clip

from respira import audio, bundle
from respira.cli import main
from respira.inference import load_model


def run(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `respira ARGS`."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("model") / "tiny.respira")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three clips, one in a sub-folder, and a text file and a hidden clip that the folder walk skips."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    (root / "sub").mkdir()
    for name, freq in [("a.wav", 300), ("b.wav", 2500), ("sub/c.wav", 900), ("sub/.d.wav", 600)]:
        write_clip(root / name, tone_clip(freq, 1.0, rng=rng))
    (root / "readme.txt").write_text("not audio")
    return root


def test_csv_columns_and_numbers(capsys, model_path, folder):
    code, out, err = run(capsys, "predict", model_path, folder, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["file", "label", "score", "prob_other", "prob_cough"]
    files = [str(folder / n) for n in ("a.wav", "b.wav", "sub/c.wav")]
    assert [r["file"] for r in rows] == files
    expected = load_model(model_path).predict(files)
    for row, rec in zip(rows, expected):
        assert row["label"] == rec["label"]
        assert float(row["score"]) == pytest.approx(rec["probabilities"]["cough"], abs=1e-6)
        assert float(row["prob_other"]) + float(row["prob_cough"]) == pytest.approx(1.0, abs=1e-5)


def test_a_bad_file_gives_exit_1_and_the_good_rows(capsys, model_path, folder, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    out_file = tmp_path / "out.csv"
    missing = tmp_path / "missing.wav"
    code, _, err = run(capsys, "predict", model_path, folder / "a.wav", bad, missing, folder / "b.wav", "-o", out_file)
    assert code == 1
    table = pd.read_csv(out_file)
    assert table["file"].tolist() == [str(folder / "a.wav"), str(folder / "b.wav")]
    lines = [line for line in err.splitlines() if "broken.wav" in line]
    assert len(lines) == 1 and "Traceback" not in err
    assert f"unreadable: {missing}: no such file or folder" in err


def test_a_folder_without_audio_is_a_clear_error(capsys, model_path, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "data.csv").write_text("a,b\n")
    write_clip(tmp_path / ".hidden.wav", tone_clip(440, 0.5, rng=np.random.default_rng(0)))  # skipped, as by detect
    code, out, err = run(capsys, "predict", model_path, tmp_path)
    assert code == 2 and out == ""
    assert str(tmp_path) in err and "no audio files" in err and "Traceback" not in err


def test_json_and_table(capsys, model_path, folder):
    code, out, _ = run(capsys, "predict", model_path, folder / "a.wav", "--format", "json")
    assert code == 0
    (record,) = json.loads(out)
    assert record["file"] == str(folder / "a.wav") and set(record["probabilities"]) == {"other", "cough"}
    code, out, _ = run(capsys, "predict", model_path, folder / "b.wav", "--backend", "onnx")
    assert code == 0 and "prob_cough" in out and "b.wav" in out


def test_unknown_model_and_format(capsys, model_path, folder):
    code, _, err = run(capsys, "predict", "no_such_builtin", folder)
    assert code == 2 and "no built-in model named 'no_such_builtin'" in err
    code, _, err = run(capsys, "predict", model_path, folder, "--format", "xml")
    assert code == 2 and "xml" in err


def test_models_lists_builtins(capsys, model_path, tmp_path, monkeypatch):
    monkeypatch.setattr(bundle, "BUILTIN_DIR", tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # one line per model
    code, out, _ = run(capsys, "models")
    assert code == 0 and "No built-in models are installed yet" in out
    (tmp_path / "cough.respira").write_bytes(model_path.read_bytes())
    code, out, _ = run(capsys, "models")
    assert code == 0
    assert "cough" in out and "classification" in out and "balanced_accuracy 0.750" in out and "1 s" in out


def test_export_command(capsys, model_path, tmp_path):
    code, out, _ = run(capsys, "export", model_path, "-o", tmp_path / "m.onnx")
    assert code == 0 and (tmp_path / "m.onnx").is_file() and (tmp_path / "m.json").is_file()
    code, _, err = run(capsys, "export", model_path, "-o", tmp_path / "m.json")
    assert code == 2 and ".onnx" in err


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """A 3-label manifest: 12 clips (cough / laugh / speech), 6 of them in the test split, one event row."""
    root = tmp_path_factory.mktemp("manifest")
    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):
        label = ("cough", "laugh", "speech")[i % 3]
        path = write_clip(root / f"{i}.wav", tone_clip((2500, 300, 900)[i % 3], 1.5, rng=rng))
        rows.append({"path": path.name, "label": label, "start": 0.2 if i == 0 else None, "end": 1.2 if i == 0 else None,
                     "subject": f"s{i // 2}", "split": "test" if i < 6 else "train", "source_label": label,
                     "sex": "f" if i % 2 else "m"})
    path = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_evaluate_binary_model_on_a_three_label_manifest(capsys, model_path, manifest, tmp_path):
    out_dir = tmp_path / "eval"
    code, out, err = run(capsys, "evaluate", model_path, manifest, "-o", out_dir, "--n-boot", "20")
    assert code == 0, err
    assert "evaluating the 6 test rows" in err
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert (out_dir / "report.md").read_text().strip()
    assert metrics["data"]["n"] == 6
    assert metrics["data"]["labels"] == {"cough": 2, "other": 4}  # laugh and speech count as "other"
    assert metrics["params"]["classes"] == ["other", "cough"] and metrics["params"]["positive"] == "cough"
    assert 0.0 <= metrics["roc_auc"] <= 1.0
    # the predictions are the inference path's own numbers, the event row cut to its start / end
    rows = pd.read_csv(out_dir / "predictions.csv")
    first = load_model(model_path).predict_proba([audio.load(manifest.parent / "0.wav", sample_rate=SR, start_s=0.2, end_s=1.2)])[0, 1]
    assert rows.loc[0, "prob_cough"] == pytest.approx(first, abs=1e-5)


def test_evaluate_all_rows_and_unknown_labels(capsys, manifest, tmp_path):
    multi = tiny_bundle(tmp_path / "multi.respira", classes=("cough", "laugh"), positive=None)
    code, _, err = run(capsys, "evaluate", multi, manifest, "-o", tmp_path / "e1", "--strict")
    assert code == 2 and "'speech'" in err and "not classes of model" in err
    three = tiny_bundle(tmp_path / "three.respira", classes=("cough", "laugh", "sneeze", "speech"), positive=None)
    code, _, err = run(capsys, "evaluate", three, manifest, "-o", tmp_path / "e2", "--split", "all", "--n-boot", "0")
    assert code == 0, err
    assert json.loads((tmp_path / "e2" / "metrics.json").read_text())["data"]["n"] == 12


def test_evaluate_reports_unreadable_rows(capsys, model_path, manifest, tmp_path):
    table = pd.read_csv(manifest)
    table.loc[1, "path"] = "missing.wav"
    broken = manifest.parent / "broken.csv"
    table.to_csv(broken, index=False)
    code, _, err = run(capsys, "evaluate", model_path, broken, "-o", tmp_path / "e", "--n-boot", "0")
    assert code == 0
    assert "row 2" in err and "missing.wav" in err
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["data"]["n"] == 5


def test_the_python_api_evaluates_as_the_cli_does(capsys, model_path, manifest, tmp_path):
    import respira
    from respira.data import read_manifest

    code, _, err = run(capsys, "evaluate", model_path, manifest, "-o", tmp_path / "cli", "--n-boot", "20")
    assert code == 0, err
    notes = []
    result = respira.evaluate(model_path, read_manifest(manifest), out=tmp_path / "api", n_boot=20, log=notes.append)
    assert result.metrics == json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert result.failures == () and notes == ["evaluating the 6 test rows of manifest (12 rows in all)"]
    assert (tmp_path / "api" / "predictions.csv").read_text() == (tmp_path / "cli" / "predictions.csv").read_text()
    from respira.evaluate import evaluate  # the package is callable, and its job is importable by name

    assert evaluate(load_model(model_path), manifest, out=tmp_path / "m", split="train", n_boot=0,
                    log=notes.append).metrics["data"]["n"] == 6


def test_evaluate_api_lists_unreadable_rows(model_path, manifest, tmp_path):
    import respira
    from respira.data import read_manifest

    table = read_manifest(manifest)
    table.loc[1, "path"] = str(tmp_path / "missing.wav")
    result = respira.evaluate(model_path, table, out=tmp_path / "e", n_boot=0, log=lambda line: None)
    assert len(result.failures) == 1 and result.failures[0].startswith("row 2: ") and "missing.wav" in result.failures[0]
    assert result.metrics["data"]["n"] == 5


def test_the_predict_job_takes_a_name_or_a_model(model_path, folder):
    from respira.errors import ConfigError
    from respira.predict import predict_files

    by_name = predict_files(model_path, [folder], batch_size=2)
    assert by_name.classes == ("other", "cough") and by_name.task == "classification" and len(by_name.records) == 3
    model = load_model(model_path)
    assert predict_files(model, [folder], batch_size=2) == by_name
    with pytest.raises(ConfigError, match="not a Model"):  # workers load the model by its name
        predict_files(model, [folder], workers=2)
