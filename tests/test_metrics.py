"""Metrics: scikit-learn parity on fixed predictions, bootstrap intervals, calibration, ICBHI, curves, subgroups."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from respira.errors import DataError
from respira.evaluate import (
    binary_curve,
    classification_metrics,
    group_table,
    icbhi_metrics,
    multilabel_metrics,
    regression_metrics,
)

N_BOOT = 200


def _binary(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets [n] and probabilities [n, 2] rounded to 2 decimals so that scores tie."""
    y = rng.integers(0, 2, n)
    score = np.round(np.clip(0.35 * y + rng.uniform(0, 0.65, n), 0, 1), 2)
    return y, np.c_[1 - score, score]


def _multiclass(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.5
    proba = np.exp(logits)
    return y, proba / proba.sum(1, keepdims=True)


def test_binary_metrics_match_sklearn(rng):
    y, proba = _binary(rng, 600)
    m = classification_metrics(y, proba, classes=["neg", "pos"], n_boot=0)
    pred = (proba[:, 1] >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))  # with tied scores
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["specificity"] == pytest.approx(skm.recall_score(1 - y, 1 - pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, proba[:, 1]))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    fpr, tpr, _ = skm.roc_curve(y, proba[:, 1])
    assert m["sensitivity_at_95_specificity"] == pytest.approx(tpr[fpr <= 0.05].max())
    assert m["specificity_at_95_sensitivity"] == pytest.approx((1 - fpr[tpr >= 0.95]).max())
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert m["threshold"] == 0.5 and m["n"] == 600 and m["classes"] == ["neg", "pos"]


def test_binary_positive_class_and_threshold_are_respected(rng):
    y, proba = _binary(rng, 300)
    flipped = classification_metrics(
        1 - y, proba[:, ::-1], classes=["pos", "neg"], positive="pos", threshold=0.3, n_boot=0
    )
    pred = (proba[:, 1] >= 0.3).astype(int)
    assert flipped["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert flipped["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))
    with pytest.raises(DataError, match="positive class 'x'"):
        classification_metrics(y, proba, classes=["neg", "pos"], positive="x")


def test_multiclass_metrics_match_sklearn(rng):
    y, proba = _multiclass(rng, 800, 5)
    classes = ["a", "b", "c", "d", "e"]
    m = classification_metrics(y, proba, classes=classes, n_boot=0)
    pred = proba.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, proba))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, pred)
    for i, name in enumerate(classes):
        got = m["per_class"][name]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((precision[i], recall[i], f1[i]))
        assert got["support"] == support[i]
    assert "sensitivity" not in m and "threshold" not in m


def test_regression_metrics_match_sklearn_and_scipy(rng):
    y = rng.normal(50, 10, 500)
    pred = np.round(y + rng.normal(0, 6, 500))  # rounded: ties for Spearman
    m = regression_metrics(y, pred, n_boot=0)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert m["pearson"] == pytest.approx(stats.pearsonr(y, pred)[0])
    assert m["spearman"] == pytest.approx(stats.spearmanr(y, pred)[0])


def test_multilabel_metrics_match_sklearn(rng):
    t = (rng.random((400, 3)) < [0.3, 0.5, 0.1]).astype(int)
    p = np.clip(0.4 * t + rng.uniform(0, 0.6, t.shape), 0, 1)
    m = multilabel_metrics(t, p, names=["a", "b", "c"], n_boot=0)
    for j, name in enumerate("abc"):
        pred = (p[:, j] >= 0.5).astype(int)
        assert m[f"{name}_auc"] == pytest.approx(skm.roc_auc_score(t[:, j], p[:, j]))
        assert m[f"{name}_sensitivity"] == pytest.approx(skm.recall_score(t[:, j], pred))
        assert m[f"{name}_specificity"] == pytest.approx(skm.recall_score(1 - t[:, j], 1 - pred))
    assert m["macro_auc"] == pytest.approx(skm.roc_auc_score(t, p, average="macro"))
    assert "icbhi_score" not in m


def test_bootstrap_interval_contains_estimate_and_narrows_with_n(rng):
    widths = {}
    for n in (200, 3200):
        y, proba = _binary(rng, n)
        m = classification_metrics(y, proba, classes=["neg", "pos"], n_boot=N_BOOT, seed=1)
        for key in ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity", "brier", "log_loss"):
            lo, hi = m[f"{key}_ci"]
            assert lo <= m[key] <= hi, key
        widths[n] = np.diff(m["roc_auc_ci"])[0]
    assert widths[3200] < 0.5 * widths[200]  # sqrt(16) = 4 times narrower in theory


def test_bootstrap_is_seeded_and_optional(rng):
    y, proba = _multiclass(rng, 300, 3)
    a = classification_metrics(y, proba, classes=["a", "b", "c"], n_boot=N_BOOT, seed=3)
    b = classification_metrics(y, proba, classes=["a", "b", "c"], n_boot=N_BOOT, seed=3)
    c = classification_metrics(y, proba, classes=["a", "b", "c"], n_boot=N_BOOT, seed=4)
    assert a["macro_f1_ci"] == b["macro_f1_ci"] != c["macro_f1_ci"]
    none = classification_metrics(y, proba, classes=["a", "b", "c"], n_boot=0)
    assert not any(k.endswith("_ci") for k in none) and none["accuracy"] == a["accuracy"]
    json.dumps(a, allow_nan=False)


def test_bootstrap_of_5000_samples_is_fast(rng):
    y, proba = _binary(rng, 5000)
    start = time.process_time()
    m = classification_metrics(y, proba, classes=["neg", "pos"], n_boot=1000)
    assert time.process_time() - start < 2.0
    assert m["roc_auc_ci"][0] < m["roc_auc"] < m["roc_auc_ci"][1]


def test_ece_small_when_calibrated_and_large_when_overconfident(rng):
    n = 5000
    score = rng.uniform(0, 1, n)
    y = (rng.random(n) < score).astype(int)  # P(y=1 | score) = score: calibrated by construction
    calibrated = classification_metrics(y, np.c_[1 - score, score], classes=["n", "p"], n_boot=0)
    sharp = np.where(score >= 0.5, 0.99, 0.01)  # same decisions, claimed 99% sure
    overconfident = classification_metrics(y, np.c_[1 - sharp, sharp], classes=["n", "p"], n_boot=0)
    assert calibrated["ece"] < 0.03
    assert overconfident["ece"] > 0.2
    assert overconfident["accuracy"] == pytest.approx(calibrated["accuracy"])


def test_icbhi_score_on_hand_computed_example():
    classes = ["crackle", "normal", "both", "wheeze"]  # any order
    c, n, b, w = range(4)
    y = np.array([n, n, n, n, c, c, w, w, b, b])
    pred = np.array([n, n, n, c, c, n, w, w, c, w])  # normal 3/4, crackle 1/2, wheeze 2/2, both 0/2
    m = icbhi_metrics(y, np.eye(4)[pred] * 0.7 + 0.075, classes=classes, n_boot=N_BOOT)
    assert m["icbhi_specificity"] == pytest.approx(3 / 4)
    assert m["icbhi_sensitivity"] == pytest.approx(3 / 6)
    assert m["icbhi_score"] == pytest.approx(0.625)
    lo, hi = m["icbhi_score_ci"]
    assert lo <= 0.625 <= hi
    with pytest.raises(DataError, match="ICBHI"):
        icbhi_metrics(y, np.eye(4)[pred], classes=["a", "b", "c", "d"])


def test_multilabel_crackle_wheeze_gives_icbhi_scores():
    # columns wheeze, crackle; rows: normal, normal, crackle, wheeze, both, both
    t = np.array([[0, 0], [0, 0], [0, 1], [1, 0], [1, 1], [1, 1]])
    p = np.array([[0.1, 0.2], [0.7, 0.1], [0.2, 0.9], [0.8, 0.6], [0.9, 0.8], [0.3, 0.9]])
    # decided: normal, wheeze, crackle, both, both, crackle -> normal 1/2, abnormal right 2/4
    m = multilabel_metrics(t, p, names=["wheeze", "crackle"], n_boot=0)
    assert m["icbhi_specificity"] == pytest.approx(0.5)
    assert m["icbhi_sensitivity"] == pytest.approx(0.5)
    assert m["icbhi_score"] == pytest.approx(0.5)


def test_binary_curve_is_small_json_and_matches_sklearn(rng):
    y, proba = _binary(rng, 3000)
    score = proba[:, 1] + rng.normal(0, 1e-3, 3000)  # many distinct thresholds
    curve = binary_curve(y, score)
    assert 2 <= len(curve["fpr"]) == len(curve["tpr"]) == len(curve["thresholds"]) <= 200
    assert (curve["fpr"][0], curve["tpr"][0]) == (0.0, 0.0) and (curve["fpr"][-1], curve["tpr"][-1]) == (1.0, 1.0)
    assert np.all(np.diff(curve["fpr"]) >= 0)
    assert curve["auc"] == pytest.approx(skm.roc_auc_score(y, score))
    json.dumps(curve, allow_nan=False)
    assert binary_curve(np.zeros(5), np.arange(5.0))["auc"] is None


def test_group_table_bands_age_and_gives_intervals_only_to_large_groups(rng):
    n = 120
    y = rng.integers(0, 2, n)
    correct = rng.random(n) < 0.8
    df = pd.DataFrame(
        {
            "age": np.r_[rng.uniform(20, 29, 100), rng.uniform(61, 80, 15), [np.nan] * 5],
            "sex": rng.choice(["F", "M"], n),
        }
    )

    def metric_fn(rows, *, with_ci):
        out = {"accuracy": float(correct[rows].mean()), "positives": int(y[rows].sum())}
        if with_ci:
            out["accuracy_ci"] = [0.0, 1.0]
        return out

    table = group_table(df, group_cols=["age", "sex"], metric_fn=metric_fn)
    assert list(table["age"]) == ["18-29", "60+", "(missing)"]
    assert [g["n"] for g in table["age"].values()] == [100, 15, 5]
    assert "accuracy_ci" in table["age"]["18-29"] and "accuracy_ci" not in table["age"]["60+"]
    assert table["age"]["18-29"]["accuracy"] == pytest.approx(correct[:100].mean())
    assert sum(g["n"] for g in table["sex"].values()) == n
    with pytest.raises(DataError, match="no column 'site'"):
        group_table(df, group_cols=["site"], metric_fn=metric_fn)


def test_bad_inputs_raise_data_errors():
    with pytest.raises(DataError, match=r"\[n, 2\]"):
        classification_metrics(np.array([0, 1]), np.ones((2, 3)) / 3, classes=["a", "b"])
    with pytest.raises(DataError, match="class indices"):
        classification_metrics(np.array([0, 2]), np.full((2, 2), 0.5), classes=["a", "b"])
    with pytest.raises(DataError, match="NaN"):
        regression_metrics(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(DataError, match="0 or 1"):
        multilabel_metrics(np.array([[2, 0]]), np.array([[0.5, 0.5]]), names=["a", "b"])
