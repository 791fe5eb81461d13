"""Evaluation: metrics with bootstrap intervals, calibration, subgroup tables, confound check, report.

The package is callable: ``respira.evaluate(model, manifest, out=...)`` runs the evaluate job
(`respira.evaluate.job.evaluate`), the same as ``respira evaluate``.
"""

from respira.callable_module import callable_module
from respira.evaluate.confound import confound_check
from respira.evaluate.job import Evaluation, evaluate
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
    "Evaluation",
    "Predictions",
    "binary_curve",
    "classification_metrics",
    "confound_check",
    "evaluate",
    "evaluate_predictions",
    "group_table",
    "icbhi_metrics",
    "multilabel_metrics",
    "regression_metrics",
]


callable_module(__name__, evaluate)
