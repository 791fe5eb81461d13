"""Evaluation: metrics with bootstrap intervals, calibration, subgroup tables, confound check, report."""

from respira.evaluate.confound import confound_check
from respira.evaluate.metrics import (
    binary_curve,
    classification_metrics,
    group_table,
    icbhi_metrics,
    multilabel_metrics,
    regression_metrics,
)
from respira.evaluate.report import Predictions, evaluate_predictions

__all__ = [
    "Predictions",
    "binary_curve",
    "classification_metrics",
    "confound_check",
    "evaluate_predictions",
    "group_table",
    "icbhi_metrics",
    "multilabel_metrics",
    "regression_metrics",
]
