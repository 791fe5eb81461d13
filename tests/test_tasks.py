"""The task registry: each task type's facts in one entry, and the modules that look them up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from respira.bundle import BundleMeta
from respira.config import config_from_dict
from respira.errors import ConfigError, DataError, ModelError
from respira.tasks import POOLINGS, TASK_NAMES, TASKS, positive_index


def test_every_task_names_its_facts():
    assert TASK_NAMES == ("classification", "multilabel", "regression")
    for name, task in TASKS.items():
        assert task.name == name and task.losses and task.output and task.fields
        y = task.targets(pd.Series({"classification": ["a", "b"], "multilabel": ["a+b", "b"],
                                    "regression": ["1.5", "2"]}[name]), ("a", "b") if name != "regression" else ("v",))
        assert y.dtype == np.float32 and y.ndim == 2
        assert task.metric in task.metrics(y, y)  # the default early-stop metric is measured


def test_columns_and_records_agree():
    for name, task in TASKS.items():
        classes = ("a", "b") if name != "regression" else ("v",)
        output = np.array([0.3, 0.7], np.float32) if not task.values else np.float32(1.25)
        record = task.record(output, classes=classes, positive=None, thresholds={"decision": 0.5})
        columns = task.columns(classes)
        assert columns[0] == "file" and list(record)[: len(task.fields)] == list(task.fields)
        assert ("prob_a" in columns) == ("probabilities" in record) == task.with_probabilities


def test_binary_record_decides_by_threshold():
    record = TASKS["classification"].record(np.array([0.6, 0.4]), classes=("other", "cough"), positive="cough",
                                             thresholds={"decision": 0.3})
    assert record["label"] == "cough" and record["score"] == pytest.approx(0.4)
    assert TASKS["multilabel"].record(np.array([0.6, 0.4]), classes=("c", "w"), positive=None,
                                      thresholds={"decision": 0.5, "w": 0.3})["labels"] == ["c", "w"]


def test_activation_inverse_and_pooling():
    z = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    for task in TASKS.values():
        torch.testing.assert_close(task.activate(task.inverse(task.activate(z))), task.activate(z))
    windows = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    assert POOLINGS == ("mean", "max")
    np.testing.assert_allclose(TASKS["classification"].pool(windows, pooling="mean", positive_index=1), [0.5, 0.5])
    np.testing.assert_allclose(TASKS["classification"].pool(windows, pooling="max", positive_index=1), [0.2, 0.8])
    np.testing.assert_allclose(TASKS["classification"].pool(windows, pooling="max", positive_index=0), [0.9, 0.1])
    np.testing.assert_allclose(TASKS["multilabel"].pool(windows, pooling="max", positive_index=None), [0.9, 0.8])
    assert positive_index(("a", "b"), None) == 1 and positive_index(("a", "b", "c"), None) is None
    assert positive_index(("cough", "other"), "cough") == 0


def test_manifest_truth():
    rows = pd.DataFrame({"label": ["cough", "laugh", "speech"], "score": ["1", "2", "x"]})
    np.testing.assert_array_equal(TASKS["classification"].manifest_truth(
        rows, classes=("other", "cough"), positive="cough", model="m"), [1, 0, 0])
    with pytest.raises(DataError, match="'speech' are not classes of model 'm'"):
        TASKS["classification"].manifest_truth(rows, classes=("cough", "laugh"), positive=None, model="m")
    with pytest.raises(DataError, match="row 3: score value 'x' is not a number"):
        TASKS["regression"].manifest_truth(rows, classes=("score",), positive=None, model="m")
    with pytest.raises(DataError, match="no column 'age'"):
        TASKS["regression"].manifest_truth(rows, classes=("age",), positive=None, model="m")


def test_bundle_and_config_take_the_registry_s_names_and_losses():
    meta = dict(task="classification", classes=("a", "b"), features={}, model={"name": "x", "params": {}},
                clip_s=1.0)
    with pytest.raises(ModelError, match="task must be one of classification, multilabel, regression"):
        BundleMeta(**{**meta, "task": "ranking"})
    with pytest.raises(ModelError, match="pooling must be one of mean, max"):
        BundleMeta(**{**meta, "pooling": "median"})
    data = {"sources": [{"path": "m.csv"}]}
    needs = {"multilabel": {"data": {**data, "classes": ["a", "b"]}}, "regression": {"augment": {"balance": "none"}}}
    for name, task in TASKS.items():
        cfg = config_from_dict({"data": data, **needs.get(name, {}), "task": {"type": name}})
        assert cfg.loss == task.losses[0]
    with pytest.raises(ConfigError, match="task.loss: a multilabel task takes bce"):
        config_from_dict({**needs["multilabel"], "task": {"type": "multilabel", "loss": "ce"}})


def test_checks_outside_the_registry_follow_the_task_facts():
    from respira.evaluate.report import _TASKS as REPORTS

    facts = {name: (t.exclusive, t.independent, t.values, t.min_classes) for name, t in TASKS.items()}
    assert facts == {"classification": (True, False, False, 2), "multilabel": (False, True, False, 1),
                     "regression": (False, False, True, 1)}
    assert set(REPORTS) == set(TASKS)  # every task type has its evaluation report
    meta = dict(features={}, model={"name": "x", "params": {}}, clip_s=1.0)
    for name, task in TASKS.items():
        with pytest.raises(ModelError, match=f"a {name} bundle needs at least {task.min_classes} class"):
            BundleMeta(**meta, task=name, classes=("a", "b", "c")[: task.min_classes - 1])
        if task.exclusive:
            assert BundleMeta(**meta, task=name, classes=("a", "b"), positive="b").positive == "b"
        else:
            with pytest.raises(ModelError, match="positive class is only meaningful"):
                BundleMeta(**meta, task=name, classes=("a", "b")[: 1 if task.values else 2], positive="a")
    with pytest.raises(ConfigError, match="data.positive: only a classification task"):
        config_from_dict({"data": {"sources": [{"path": "m.csv"}], "classes": ["a"], "positive": "a"},
                          "task": {"type": "multilabel"}})
