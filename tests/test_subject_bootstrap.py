"""Subject-level bootstrap: subjects drawn with all their rows; the row bootstrap when none are named."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tiny_models import tiny_bundle, tone_clip, write_clip

from respira.cli import main
from respira.evaluate import (
    Predictions,
    classification_metrics,
    evaluate_predictions,
    icbhi_metrics,
    multilabel_metrics,
    regression_metrics,
)
from respira.evaluate.bootstrap import resample_weights, resampling_units

N_BOOT = 300


def _sure(y: np.ndarray, correct: np.ndarray, k: int = 2) -> np.ndarray:
    """Probabilities [n, k] that put 0.9 on the true class where `correct`, else on the next class."""
    decided = np.where(correct, y, (y + 1) % k)
    return np.eye(k)[decided] * (0.9 - 0.1 / (k - 1)) + 0.1 / (k - 1)


def test_two_subjects_with_many_identical_clips_widen_the_interval():
    # subject A: 50 clips all right, B: 50 all wrong, six more subjects of 5 clips, 4 of them right
    subjects = np.repeat(["A", "B", "C", "D", "E", "F", "G", "H"], [50, 50, 5, 5, 5, 5, 5, 5])
    y = np.arange(len(subjects)) % 2  # every subject has clips of both classes
    correct = np.r_[np.ones(50), np.zeros(50), np.tile([1, 1, 1, 1, 0], 6)].astype(bool)
    proba = _sure(y, correct)
    rows = classification_metrics(y, proba, classes=["a", "b"], n_boot=N_BOOT, seed=0)
    subj = classification_metrics(y, proba, classes=["a", "b"], n_boot=N_BOOT, seed=0, subjects=subjects)
    assert rows["accuracy"] == subj["accuracy"] == pytest.approx(74 / 130)
    assert (rows["ci_method"], rows["subjects"]) == ("row_bootstrap", 130)
    assert (subj["ci_method"], subj["subjects"]) == ("subject_bootstrap", 8)
    width = {name: np.diff(m["accuracy_ci"])[0] for name, m in (("rows", rows), ("subjects", subj))}
    assert width["subjects"] > 2.5 * width["rows"], width
    assert subj["accuracy_ci"][0] < subj["accuracy"] < subj["accuracy_ci"][1]


@pytest.mark.parametrize("gaps", [False, True])
def test_one_row_per_subject_draws_exactly_the_row_bootstrap(rng, gaps):
    n, k = 150, 3
    y = rng.integers(0, k, n)
    proba = rng.dirichlet(np.ones(k), n) * 0.5 + np.eye(k)[y] * 0.5
    subjects = np.array([f"speaker-{i}" for i in rng.permutation(n)], dtype=object)
    if gaps:  # rows without a subject are subjects of their own
        subjects[rng.random(n) < 0.3] = rng.choice([None, "", np.nan, "  "])
    rows = classification_metrics(y, proba, classes=["a", "b", "c"], n_boot=N_BOOT, seed=5)
    subj = classification_metrics(y, proba, classes=["a", "b", "c"], n_boot=N_BOOT, seed=5, subjects=subjects)
    assert subj.pop("ci_method") == "subject_bootstrap" and rows.pop("ci_method") == "row_bootstrap"
    assert subj == rows  # same seed, same resamples; subjects == rows == n


def test_resampling_units_number_subjects_in_order_of_first_appearance():
    units = resampling_units(np.array(["a", "b", "a", None, "", np.nan, " b "], dtype=object), n=7)
    assert units.tolist() == [0, 1, 0, 2, 3, 4, 1]
    assert resampling_units(np.array([None, "", np.nan], dtype=object), n=3) is None
    assert resampling_units(None, n=3) is None


def test_subjects_move_with_all_their_rows_and_keep_their_class_counts(rng):
    # pure subjects: 0-3 class 0, 4-6 class 1; subjects 7 and 8 hold rows of both classes
    units = np.r_[np.repeat(np.arange(7), [3, 1, 4, 2, 5, 1, 2]), [7, 7, 8, 8, 8]]
    strata = np.r_[np.zeros(10, int), np.ones(8, int), [0, 1, 1, 0, 1]]
    weights = np.concatenate(list(resample_weights(strata, n_boot=500, seed=2, units=units)))
    assert weights.shape == (500, len(units))
    first = np.array([np.flatnonzero(units == u)[0] for u in range(9)])
    drawn = weights[:, first]  # how often each subject was drawn
    assert np.array_equal(weights, drawn[:, units])  # every row weighs as its subject
    assert (drawn[:, :4].sum(1) == 4).all() and (drawn[:, 4:7].sum(1) == 3).all() and (drawn[:, 7:].sum(1) == 2).all()
    assert drawn[:, :4].std(0).min() > 0  # and they do vary


def test_a_class_missing_from_resamples_keeps_intervals_defined(rng):
    # class "c" lives only in subject "m", whose rows mix classes: a third of the resamples lack it
    subjects = np.repeat(["m", "n", "p", "q", "r", "s"], 6)
    y = np.tile([0, 1, 0, 1, 0, 1], 6)
    y[:2] = 2
    correct = rng.random(len(y)) < 0.75
    m = classification_metrics(y, _sure(y, correct, 3), classes=["a", "b", "c"], n_boot=N_BOOT, subjects=subjects)
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "ece", "brier", "log_loss"):
        lo, hi = m[f"{key}_ci"]
        assert lo < hi, key
    json.dumps(m, allow_nan=False)


def test_every_task_resamples_subjects(rng):
    n = 80
    subjects = np.repeat([f"s{i}" for i in range(20)], 4)
    t = rng.integers(0, 2, (n, 2))
    multilabel = multilabel_metrics(t, rng.random((n, 2)), names=["crackle", "wheeze"], n_boot=50, subjects=subjects)
    y = rng.integers(0, 4, n)
    icbhi = icbhi_metrics(y, rng.dirichlet(np.ones(4), n), classes=["normal", "crackle", "wheeze", "both"],
                          n_boot=50, subjects=subjects)
    regression = regression_metrics(rng.normal(size=n), rng.normal(size=n), n_boot=50, subjects=subjects)
    for m in (multilabel, icbhi, regression):
        assert (m["ci_method"], m["subjects"]) == ("subject_bootstrap", 20)
        assert m["icbhi_score_ci" if "icbhi_score" in m else "mae_ci"] is not None


def _predictions(subject: list | None) -> Predictions:
    rng = np.random.default_rng(4)
    n = 60
    y = rng.integers(0, 2, n)
    manifest = pd.DataFrame({"path": [f"c{i}.wav" for i in range(n)], "label": np.array(["no", "yes"])[y],
                             "sex": rng.choice(["F", "M"], n)})
    if subject is not None:
        manifest["subject"] = subject
    proba = _sure(y, rng.random(n) < 0.8)
    return Predictions(manifest, ["no", "yes"], "classification", proba, None, y)


@pytest.mark.parametrize(
    ("subject", "method", "units"),
    [
        ([f"p{i // 3}" for i in range(60)], "subject_bootstrap", 20),
        ([f"p{i // 3}" if i < 30 else "" for i in range(60)], "subject_bootstrap", 40),  # 10 + 30 rows alone
        (None, "row_bootstrap", 60),
        ([""] * 60, "row_bootstrap", 60),
    ],
)
def test_evaluate_predictions_says_how_intervals_were_drawn(tmp_path, subject, method, units):
    metrics = evaluate_predictions(_predictions(subject), out=tmp_path, n_boot=50)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert (metrics["ci_method"], metrics["subjects"]) == (method, units)
    groups = metrics["groups"]["sex"]
    assert sum(g["subjects"] for g in groups.values()) >= units  # a subject can appear in both groups
    report = (tmp_path / "report.md").read_text()
    expected = f"of the {units} subjects with all their rows" if method == "subject_bootstrap" else f"of the {units} rows"
    assert expected in report
    assert ("| value | n | subjects |" in report) == (method == "subject_bootstrap")


def test_cli_evaluate_resamples_the_manifest_subjects(capsys, tmp_path):
    model = tiny_bundle(tmp_path / "tiny.respira")
    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):
        label = ("cough", "laugh", "speech")[i % 3]
        path = write_clip(tmp_path / f"{i}.wav", tone_clip((2500, 300, 900)[i % 3], 1.0, rng=rng))
        rows.append({"path": path.name, "label": label, "start": None, "end": None, "subject": f"s{i // 3}",
                     "split": "test", "source_label": label})
    with_subjects = tmp_path / "subjects.csv"
    pd.DataFrame(rows).to_csv(with_subjects, index=False)
    without = tmp_path / "rows.csv"  # the manifest contract has the column; here it is empty
    pd.DataFrame(rows).assign(subject="").to_csv(without, index=False)
    for manifest, method, units in ((with_subjects, "subject_bootstrap", 4), (without, "row_bootstrap", 12)):
        with pytest.raises(SystemExit) as exit_info:
            main(["evaluate", str(model), str(manifest), "-o", str(tmp_path / manifest.stem), "--n-boot", "20"])
        assert exit_info.value.code == 0, capsys.readouterr().err
        metrics = json.loads((tmp_path / manifest.stem / "metrics.json").read_text())
        assert (metrics["ci_method"], metrics["subjects"]) == (method, units)
