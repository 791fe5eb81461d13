"""Shared fixtures: the real data beside the repo (skipped when absent) and a seeded RNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Idle OpenMP threads yield instead of spinning (as the CLI sets it): on a busy 2-core machine
# spinning torch threads made the suite several times slower. Set before any test imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RESPIRA_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`; the test is skipped where it is absent (a user's machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
