"""report.md from the content of metrics.json: a pure function of the numbers, so the two always agree."""

from __future__ import annotations

from collections.abc import Iterable

from respira.evaluate.bootstrap import SUBJECT_BOOTSTRAP
from respira.evaluate.confound import MIN_AUC, MIN_EXCESS, MIN_Z
from respira.evaluate.metrics import MIN_N_CI
from respira.tasks import TASKS

#: headline rows, in order: (metrics.json key, name shown)
HEADLINE: tuple[tuple[str, str], ...] = (
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("macro_f1", "Macro F1"),
    ("roc_auc", "ROC-AUC"),
    ("macro_auc", "Macro ROC-AUC"),
    ("sensitivity", "Sensitivity"),
    ("specificity", "Specificity"),
    ("precision", "Precision"),
    ("f1", "F1 (positive class)"),
    ("sensitivity_at_95_specificity", "Sensitivity at 95% specificity"),
    ("specificity_at_95_sensitivity", "Specificity at 95% sensitivity"),
    ("icbhi_score", "ICBHI score"),
    ("icbhi_sensitivity", "ICBHI sensitivity"),
    ("icbhi_specificity", "ICBHI specificity"),
    ("ece", "ECE (15 bins)"),
    ("brier", "Brier score"),
    ("log_loss", "Log loss"),
    ("mae", "MAE"),
    ("rmse", "RMSE"),
    ("r2", "R²"),
    ("pearson", "Pearson r"),
    ("spearman", "Spearman ρ"),
)
_NAMES = dict(HEADLINE)


def render_report(metrics: dict, *, figures: list[tuple[str, str]]) -> str:
    """The Markdown report of `evaluate_predictions`' metrics; `figures` are (caption, file) beside it."""
    params = metrics["params"]
    lines = [f"# Evaluation report: {params['model'] or 'model'}", ""]
    lines += _summary(metrics)
    confound = metrics.get("confound")
    if confound and confound["warning"]:
        flagged = ", ".join(f"`{c}`" for c in confound["flagged"]) or "the metadata columns together"
        lines += [
            "> [!WARNING]",
            f"> **WARNING: possible confound. Flagged: {flagged}.** {confound['warning']}",
            "> See the confound check and the subgroup tables below.",
            "",
        ]
    lines += ["## Headline metrics", ""]
    lines += _table(
        ["metric", "value", "95% CI"],
        [[name, _num(metrics[k]), _ci(metrics.get(f"{k}_ci"))] for k, name in HEADLINE if k in metrics],
    )
    lines += _per_class(metrics, params)
    lines += ["## Figures", ""] + [f"![{caption}]({file})\n" for caption, file in figures]
    lines += _groups(metrics["groups"], by_subject=metrics["ci_method"] == SUBJECT_BOOTSTRAP)
    lines += _confidence(metrics)
    lines += _confound(confound)
    return "\n".join(lines).rstrip() + "\n"


def _summary(metrics: dict) -> list[str]:
    params, data = metrics["params"], metrics["data"]
    lines = [
        f"- Model: `{params['model'] or 'unnamed'}`",
        f"- Task: {params['task']}"
        + (
            f" (positive class `{params['positive']}`, threshold {params['threshold']:g})" if params["positive"] else ""
        ),
        f"- Rows evaluated: {data['n']}" + (f" from {data['subjects']} subjects" if "subjects" in data else ""),
    ]
    if data.get("splits"):
        lines.append("- Splits: " + ", ".join(f"{k} {v}" for k, v in data["splits"].items()))
    if data.get("labels"):
        lines.append("- Labels: " + ", ".join(f"{k} {v}" for k, v in data["labels"].items()))
    lines += [
        f"- Intervals: {_intervals(metrics) if params['n_boot'] else 'none (n_boot = 0)'}",
        f"- respira {params['respira_version']}",
        "",
    ]
    return lines


def _intervals(metrics: dict) -> str:
    """How the intervals were drawn: subjects (with all their rows) or rows, stratified by what, how many."""
    params = metrics["params"]
    task = TASKS[params["task"]]  # the resamples keep the shares of each class, or of each label combination
    stratum = "class" if task.exclusive else "label combination" if task.independent else None
    if metrics["ci_method"] == SUBJECT_BOOTSTRAP:
        units = f"the {metrics['subjects']} subjects with all their rows"
        strata = f", stratified by {stratum} where a subject's rows share one" if stratum else ""
    else:
        units = f"the {metrics['subjects']} rows (the manifest names no subjects)"
        strata = f", stratified by {stratum}" if stratum else ""
    return (
        f"{params['n_boot']} bootstrap resamples of {units}{strata}; "
        f"95% percentile intervals, seed {params['seed']}"
    )


def _per_class(metrics: dict, params: dict) -> list[str]:
    if "per_class" in metrics:
        rows = [
            [f"`{c}`", _num(m["precision"]), _num(m["recall"]), _num(m["f1"]), str(m["support"])]
            for c, m in metrics["per_class"].items()
        ]
        return ["## Per class", ""] + _table(["class", "precision", "recall", "F1", "support"], rows)
    if TASKS[params["task"]].independent:
        rows = [
            [f"`{c}`"]
            + [
                f"{_num(metrics[f'{c}_{m}'])} {_ci(metrics.get(f'{c}_{m}_ci'))}"
                for m in ("auc", "sensitivity", "specificity")
            ]
            for c in params["classes"]
        ]
        return ["## Per label", ""] + _table(["label", "ROC-AUC", "sensitivity", "specificity"], rows)
    return []


def _groups(groups: dict, *, by_subject: bool) -> list[str]:
    """One table per metadata column; a subjects column when the intervals resample subjects."""
    if not groups:
        return []
    lines = ["## Subgroups", "", f"Intervals only for groups of at least {MIN_N_CI} rows.", ""]
    counts = ["n", "subjects"] if by_subject else ["n"]
    for column, values in groups.items():
        present = {k for m in values.values() for k in m}
        keys = [k for k, _ in HEADLINE if k in present]
        rows = [
            [f"`{v}`"] + [str(m[c]) for c in counts]
            + [f"{_num(m.get(k))} {_ci(m.get(f'{k}_ci'))}".strip() for k in keys]
            for v, m in values.items()
        ]
        lines += [f"### {column}", ""] + _table(["value", *counts] + [_NAMES.get(k, k) for k in keys], rows)
    return lines


def _confidence(metrics: dict) -> list[str]:
    calibration = metrics.get("calibration")
    if calibration is None:
        errors = metrics.get("largest_errors") or []
        rows = [
            [f"`{e['path']}`", _segment(e), _num(e["label"]), _num(e["predicted"]), _num(e["error"])] for e in errors
        ]
        return ["## Largest errors", ""] + _table(["path", "segment", "true", "predicted", "error"], rows)
    c = calibration["confidence"]
    lines = [
        "## Confidence",
        "",
        *(
            f"- {side.capitalize()} answers ({c[f'n_{side}']}): mean confidence {_num(c[f'mean_confidence_{side}'])}, "
            f"median {_num(c[f'median_confidence_{side}'])}"
            for side in ("right", "wrong")
        ),
        "",
        "Accuracy per confidence bin (top label):",
        "",
    ]
    bins = [
        [f"{b['lo']:.2f}–{b['hi']:.2f}", str(b["n"]), _num(b["confidence"]), _num(b["accuracy"])]
        for b in calibration["bins"]
    ]
    lines += _table(["confidence", "n", "mean confidence", "accuracy"], bins)
    mistakes = calibration["most_confident_mistakes"]
    if mistakes:
        rows = [
            [f"`{m['path']}`", _segment(m), f"`{m['label']}`", f"`{m['predicted']}`", _num(m["confidence"])]
            for m in mistakes
        ]
        lines += ["Most confident mistakes:", ""] + _table(["path", "segment", "true", "predicted", "confidence"], rows)
    return lines


def _confound(confound: dict | None) -> list[str]:
    if confound is None:
        return []
    lines = [
        "## Confound check",
        "",
        "How well each metadata column predicts the label on its own (subject-grouped cross-validation).",
    ]
    lines += [
        f"Flagged: ROC-AUC >= {MIN_AUC} (two classes) or balanced accuracy >= chance + {MIN_EXCESS} (more classes), "
        f"and at least {MIN_Z} null standard errors above chance for the number of subjects.",
        "",
    ]
    results = dict(confound["columns"])
    if confound["combined"] is not None:
        results["(all together)"] = confound["combined"]
    if not results:
        return lines + ["No metadata columns to check.", ""]
    rows = [
        [
            f"`{c}`",
            _num(r["balanced_accuracy"]),
            _num(r["roc_auc"]),
            _num(r["chance"]),
            "**yes**" if r["flag"] else "no",
        ]
        for c, r in results.items()
    ]
    return lines + _table(["column", "balanced accuracy", "ROC-AUC", "chance", "flagged"], rows)


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines + [""]


def _num(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def _segment(row: dict) -> str:
    return "whole file" if row["start"] is None else f"{row['start']:.2f}–{row['end']:.2f} s"


def _ci(interval: list[float] | None) -> str:
    return "" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"
