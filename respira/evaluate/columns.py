"""Which manifest columns are metadata, and how a metadata column splits rows into groups."""

from __future__ import annotations

import numpy as np
import pandas as pd

from respira.data.manifest import MANIFEST_COLUMNS

MAX_VALUES = 50  # a non-numeric column with more distinct values (ids, free text) is not a grouping
MISSING = "(missing)"
AGE_BANDS: tuple[tuple[float, str], ...] = ((18, "<18"), (30, "18-29"), (45, "30-44"), (60, "45-59"), (np.inf, "60+"))
_NUMERIC_BINS = 4  # quartiles for numeric columns other than age
_FEW_VALUES = 10  # a numeric column with at most this many values is grouped by value


def metadata_columns(df: pd.DataFrame, *, exclude: tuple[str, ...] = ()) -> list[str]:
    """Columns worth grouping by: not in the manifest contract or `exclude`, numeric with >= 2
    distinct values, or with 2..50 distinct values (missing counts as one)."""
    out = []
    for col in df.columns:
        if col in MANIFEST_COLUMNS or col in exclude:
            continue
        distinct = df[col].nunique(dropna=False)
        if distinct >= 2 and (_is_numeric(df[col]) or distinct <= MAX_VALUES):
            out.append(col)
    return out


def group_values(values: pd.Series) -> pd.Categorical:
    """Group names [n] with ordered categories: a numeric `age` -> bands (<18, 18-29, 30-44,
    45-59, 60+), other numeric columns with > 10 values -> quartile ranges, the rest -> their
    text; missing -> "(missing)", listed last. Only categories that occur are listed."""
    present = values.notna()
    age = _is_age(str(values.name))
    if _is_numeric(values) and (age or values.nunique() > _FEW_VALUES):
        x = values.astype(float)
        binned = _age_bands(x) if age else _quantile_bins(x)
        order = [str(c) for c in binned.cat.categories]
        names = binned.astype(str)
    else:
        names = values.map(_text)
        order = (
            [_text(v) for v in sorted(values[present].unique())] if _is_numeric(values) else sorted(set(names[present]))
        )
    names = names.where(present, MISSING)
    seen = set(names)
    categories = [c for c in order if c in seen] + ([MISSING] if MISSING in seen else [])
    return pd.Categorical(names, categories=categories, ordered=True)


def _age_bands(x: pd.Series) -> pd.Series:
    edges = [-np.inf] + [upper for upper, _ in AGE_BANDS]
    return pd.cut(x, bins=edges, labels=[name for _, name in AGE_BANDS], right=False)


def _quantile_bins(x: pd.Series) -> pd.Series:
    edges = np.unique(np.nanquantile(x, np.linspace(0, 1, _NUMERIC_BINS + 1)))
    labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return pd.cut(x, bins=edges, labels=labels, include_lowest=True)


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _is_age(name: str) -> bool:
    name = name.lower()
    return name == "age" or name.startswith("age_")


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
