"""The one window grid: which windows a signal has, where they start, how its end is padded."""

from __future__ import annotations

import math

import numpy as np
import pytest

from respira.windowing import WindowGrid


@pytest.mark.parametrize("hop, length", [(1, 1), (3, 10), (5, 5), (7, 4), (4000, 16000)])
def test_count_reaches_the_end_with_the_last_window(hop, length):
    grid = WindowGrid(hop=hop, length=length)
    for samples in range(0, 3 * length + 2 * hop):
        n = grid.count(samples)
        assert n == (0 if samples == 0 else 1 if samples <= length else math.ceil((samples - length) / hop) + 1)
        if n > 1:  # the last window reaches the end, the one before does not
            assert grid.reach(n) >= samples > grid.reach(n - 1)
        assert grid.starts(samples).tolist() == [k * hop for k in range(n)]


def test_windows_are_cut_off_the_grid_and_zero_padded_past_the_end():
    grid = WindowGrid(hop=3, length=5)
    y = np.arange(1, 12, dtype=np.float32)  # 11 samples: windows 0 .. 2 inside
    padded = np.concatenate([y, np.zeros(50, np.float32)])
    ks = np.array([0, 2, 3, 9])
    np.testing.assert_array_equal(grid.windows(y, ks), np.stack([padded[k * 3: k * 3 + 5] for k in ks]))
    assert len(grid.fit(y, 2)) == grid.reach(2) == 8 and grid.fit(y, 2)[-1] == 8  # cut
    np.testing.assert_array_equal(grid.fit(y, 4), padded[:14])  # padded
