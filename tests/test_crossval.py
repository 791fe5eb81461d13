"""benchmarks/crossval.py: every subject is tested once, never trained on in its own fold."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "crossval.py"
_SPEC = importlib.util.spec_from_file_location("crossval", _PATH)
crossval = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(crossval)


def _table() -> pd.DataFrame:
    """20 subjects of 3 clips, two data sets, two labels, and mined rows of subjects s0 and s7 named train."""
    rows = [{"path": f"/a/s{s}_{i}.wav", "label": "cough" if s % 2 else "laugh", "subject": f"s{s}", "split": "",
             "dataset": "nv" if s < 10 else "calls"} for s in range(20) for i in range(3)]
    rows += [{"path": f"/a/s{s}_mined.wav", "label": "laugh", "subject": f"s{s}", "split": "train", "dataset": "mined"}
             for s in (0, 7)]
    return pd.DataFrame(rows)


def test_each_subject_is_tested_in_exactly_one_fold():
    table = _table()
    folds = crossval.fold_tables(table, folds=4, seed=0)
    tested = [set(f.loc[f["split"] == "test", "subject"]) for f in folds]
    assert set().union(*tested) == {f"s{s}" for s in range(20)}
    assert sum(len(t) for t in tested) == 20  # disjoint
    for fold, test_subjects in zip(folds, tested):
        others = fold.loc[fold["split"] != "test"]
        assert not set(others["subject"]) & test_subjects  # a test subject is never trained or validated on
        assert (fold.loc[fold["split"] == "test"].groupby("subject").size() == 3).all()  # all of its clips


def test_mined_rows_are_dropped_from_their_subjects_test_fold_and_kept_elsewhere():
    table = _table()
    folds = crossval.fold_tables(table, folds=4, seed=0)
    for fold in folds:
        mined = fold[fold["dataset"] == "mined"]
        test_subjects = set(fold.loc[fold["split"] == "test", "subject"])
        assert set(mined["subject"]) == {"s0", "s7"} - test_subjects
        assert (mined["split"] == "train").all()
    assert sum(len(f) for f in folds) == 4 * len(table) - 2  # each mined row missing from one fold
