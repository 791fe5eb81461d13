"""Evaluation: metrics with bootstrap intervals, calibration, subgroup tables, confound check, report.

The package is callable: ``respira.evaluate(model, manifest, out_dir=...)`` runs the evaluate job
(`respira.evaluate.job.evaluate`), the same as ``respira evaluate``.
"""

import sys
import types

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


class _CallablePackage(types.ModuleType):
    """This package as a function: `import respira` finds the sub-package respira.evaluate under the
    name of the job, so calling the package runs the job."""

    def __call__(self, *args: object, **kwargs: object) -> Evaluation:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
