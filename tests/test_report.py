"""evaluate_predictions: every file written for binary, 5-class, multilabel and regression tasks; report content."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from respira.errors import DataError
from respira.evaluate import Predictions, evaluate_predictions

N_BOOT = 200
N = 240
PNG = b"\x89PNG\r\n\x1a\n"


def _manifest(rng: np.random.Generator, labels: np.ndarray) -> pd.DataFrame:
    n = len(labels)
    return pd.DataFrame(
        {
            "path": [f"/data/clip{i:03d}.wav" for i in range(n)],
            "label": labels,
            "start": np.where(np.arange(n) % 2 == 0, 1.5, np.nan),
            "end": np.where(np.arange(n) % 2 == 0, 2.25, np.nan),
            "subject": [f"s{i // 2}" for i in range(n)],
            "split": "test",
            "source_label": labels,
            "sex": rng.choice(["F", "M"], n),
            "age": rng.uniform(5, 90, n).round(),
        }
    )


def _read(out: Path) -> tuple[dict, pd.DataFrame, str]:
    metrics = json.loads(
        (out / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in metrics.json")
    )
    return metrics, pd.read_csv(out / "predictions.csv"), (out / "report.md").read_text()


def _assert_images(out: Path, report: str, names: list[str]) -> None:
    for name in names:
        assert (out / name).read_bytes().startswith(PNG), name
        assert f"]({name})" in report, name  # embedded by relative path


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> tuple[Path, dict]:
    """COVID-like: the recording source predicts the label (75% agreement)."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, N)
    score = np.clip(0.4 * y + rng.uniform(0, 0.6, N), 0, 1)
    manifest = _manifest(rng, np.array(["negative", "covid19"])[y])
    agree = rng.random(N) < 0.8
    manifest["source"] = np.where(agree == (y == 1), "call-center", "telegram")
    pred = Predictions(
        manifest, ["negative", "covid19"], "classification", np.c_[1 - score, score], None, y, positive="covid19"
    )
    out = tmp_path_factory.mktemp("binary")
    return out, evaluate_predictions(pred, out=out, model_name="toy-covid", n_boot=N_BOOT)


@pytest.fixture(scope="module")
def five_class(tmp_path_factory) -> tuple[Path, dict, np.ndarray]:
    rng = np.random.default_rng(2)
    classes = ["cough", "sneeze", "laugh", "sigh", "speech"]
    y = rng.integers(0, 5, N)
    logits = rng.normal(size=(N, 5))
    logits[np.arange(N), y] += 2.0
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = Predictions(_manifest(rng, np.array(classes)[y]), classes, "classification", proba, None, y)
    out = tmp_path_factory.mktemp("five")
    return out, evaluate_predictions(pred, out=out, model_name="vocal", n_boot=N_BOOT), proba


def test_binary_writes_every_file_with_metrics_and_intervals(binary):
    out, returned = binary
    metrics, table, report = _read(out)
    assert metrics == returned
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity", "ece", "brier"):
        lo, hi = metrics[f"{key}_ci"]
        assert lo <= metrics[key] <= hi
    assert metrics["confusion_matrix"] and set(metrics["per_class"]) == {"negative", "covid19"}
    assert list(table.columns) == [
        "path",
        "start",
        "end",
        "label",
        "predicted",
        "score",
        "prob_negative",
        "prob_covid19",
    ]
    assert len(table) == N and table["start"].isna().sum() == N // 2
    correct = (table["label"] == table["predicted"]).mean()
    assert correct == pytest.approx(metrics["accuracy"])
    assert np.allclose(table[["prob_negative", "prob_covid19"]].max(axis=1), table["score"])
    _assert_images(out, report, ["confusion_matrix.png", "roc.png", "calibration.png"])
    assert "# Evaluation report: toy-covid" in report and "| ROC-AUC |" in report


def test_binary_groups_calibration_and_params(binary):
    _, metrics = binary
    groups = metrics["groups"]
    assert set(groups) == {"sex", "age", "source"}
    assert sum(g["n"] for g in groups["sex"].values()) == N
    assert set(groups["age"]) <= {"<18", "18-29", "30-44", "45-59", "60+"}
    for group in groups["source"].values():
        assert {"n", "accuracy", "roc_auc", "sensitivity", "specificity"} <= set(group)
        assert ("accuracy_ci" in group) == (group["n"] >= 20)
    calibration = metrics["calibration"]
    assert sum(b["n"] for b in calibration["bins"]) == N
    confidence = calibration["confidence"]
    assert confidence["n_right"] + confidence["n_wrong"] == N
    assert confidence["mean_confidence_right"] > confidence["mean_confidence_wrong"]
    mistakes = calibration["most_confident_mistakes"]
    assert len(mistakes) == 10 and all(m["label"] != m["predicted"] for m in mistakes)
    assert [m["confidence"] for m in mistakes] == sorted((m["confidence"] for m in mistakes), reverse=True)
    assert metrics["params"]["n_boot"] == N_BOOT and metrics["params"]["positive"] == "covid19"
    assert metrics["data"] == {"n": N, "subjects": N // 2, "splits": {"test": N}, "labels": metrics["data"]["labels"]}
    assert (metrics["ci_method"], metrics["subjects"]) == ("subject_bootstrap", N // 2)  # two clips per subject


def test_report_warns_about_a_flagged_confound(binary):
    out, metrics = binary
    assert metrics["confound"]["flagged"] == ["source"]
    report = (out / "report.md").read_text()
    warning = report.index("WARNING")
    assert warning < report.index("## Headline metrics")  # visible before the numbers
    assert "`source`" in report[warning : warning + 300]
    assert "## Confound check" in report and "## Subgroups" in report and "### source" in report
    assert "Most confident mistakes" in report and "/data/clip" in report


def test_five_class_writes_every_file_and_no_confound_warning(five_class):
    out, returned, proba = five_class
    metrics, table, report = _read(out)
    assert metrics["classes"] == ["cough", "sneeze", "laugh", "sigh", "speech"]
    assert np.array(metrics["confusion_matrix"]).shape == (5, 5)
    assert "sensitivity" not in metrics and metrics["roc_auc_ci"] is not None
    assert np.allclose(table[[f"prob_{c}" for c in metrics["classes"]]].to_numpy(), proba)
    _assert_images(out, report, ["confusion_matrix.png", "roc.png", "calibration.png"])
    assert metrics["confound"]["flagged"] == [] and "WARNING" not in report
    assert "## Per class" in report and "`speech`" in report


def test_icbhi_classes_add_icbhi_scores(tmp_path):
    rng = np.random.default_rng(3)
    classes = ["normal", "crackle", "wheeze", "both"]
    y = rng.integers(0, 4, 80)
    proba = np.full((80, 4), 0.1)
    proba[np.arange(80), y] = 0.7
    pred = Predictions(_manifest(rng, np.array(classes)[y]), classes, "classification", proba, None, y)
    metrics = evaluate_predictions(pred, out=tmp_path, n_boot=N_BOOT)
    assert metrics["icbhi_score"] == 1.0 and metrics["icbhi_score_ci"] == [1.0, 1.0]
    assert "ICBHI score" in (tmp_path / "report.md").read_text()


def test_multilabel_writes_every_file(tmp_path):
    rng = np.random.default_rng(4)
    t = (rng.random((N, 2)) < 0.3).astype(int)
    p = np.clip(0.4 * t + rng.uniform(0, 0.6, t.shape), 0, 1)
    labels = np.array(["normal", "crackle", "wheeze", "both"])[t[:, 0] + 2 * t[:, 1]]
    pred = Predictions(_manifest(rng, labels), ["crackle", "wheeze"], "multilabel", p, None, t)
    returned = evaluate_predictions(pred, out=tmp_path, n_boot=N_BOOT)
    metrics, table, report = _read(tmp_path)
    assert metrics == returned
    assert {"crackle_auc", "wheeze_sensitivity", "macro_auc", "icbhi_score", "icbhi_score_ci"} <= set(metrics)
    assert list(table.columns) == ["path", "start", "end", "label", "predicted", "score", "prob_crackle", "prob_wheeze"]
    assert set(table["label"]) <= {"none", "crackle", "wheeze", "crackle+wheeze"}
    _assert_images(tmp_path, report, ["confusion_matrix.png", "roc.png", "calibration.png"])
    assert "## Per label" in report and "macro_auc" in metrics["groups"]["sex"]["F"]


def test_regression_writes_every_file(tmp_path):
    rng = np.random.default_rng(5)
    target = rng.normal(50, 10, N)
    values = target + rng.normal(0, 4, N)
    pred = Predictions(_manifest(rng, target.round(1).astype(str)), [], "regression", None, values, target)
    returned = evaluate_predictions(pred, out=tmp_path, model_name="age-from-voice", n_boot=N_BOOT)
    metrics, table, report = _read(tmp_path)
    assert metrics == returned
    assert metrics["mae"] == pytest.approx(np.abs(values - target).mean())
    assert metrics["mae_ci"][0] <= metrics["mae"] <= metrics["mae_ci"][1]
    assert list(table.columns) == ["path", "start", "end", "label", "predicted", "error"]
    assert metrics["confound"] is None and metrics["calibration"] is None
    errors = [abs(e["error"]) for e in metrics["largest_errors"]]
    assert errors == sorted(errors, reverse=True) and errors[0] == pytest.approx(np.abs(values - target).max())
    _assert_images(tmp_path, report, ["scatter.png"])
    assert "| MAE |" in report and "## Largest errors" in report and "mae" in metrics["groups"]["sex"]["F"]


def test_inconsistent_predictions_raise_data_errors(rng):
    manifest = _manifest(rng, np.array(["a", "b", "a"]))
    with pytest.raises(DataError, match="3 rows but proba has 2"):
        Predictions(manifest, ["a", "b"], "classification", np.full((2, 2), 0.5), None, np.array([0, 1, 0]))
    with pytest.raises(DataError, match="unknown task 'ranking'"):
        Predictions(manifest, ["a", "b"], "ranking", None, None, np.array([0, 1, 0]))
    with pytest.raises(DataError, match="need values"):
        Predictions(manifest, [], "regression", None, None, np.zeros(3))
