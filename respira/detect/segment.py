"""Energy bursts: where the sound events are, one per cough, from frame levels alone.

A burst is a run of *sounding* frames (more than extend_db over the noise floor) that holds
at least one *loud* frame (more than gate_db over it, see `gate.loud`): a hysteresis that
lets a quiet cough's tail belong to it. Runs closer than merge_gap_s are joined (a cough's
level can dip between its explosive and voiced phases), then split where a new burst starts:
the level jumps by onset_db within 40 ms (the explosive onset of the next cough in a bout),
and split at the quietest frame while longer than max_event_s. Each piece is trimmed to its
sounding frames and kept when it holds a loud frame and is at least min_event_s long.
"""

from __future__ import annotations

import numpy as np

from respira.detect.config import DetectConfig
from respira.detect.gate import Levels, loud, runs

_ONSET_FRAMES = 2  # a jump of onset_db over at most this many frames is an onset


def find_bursts(levels: Levels, *, frame_s: float, cfg: DetectConfig) -> list[tuple[int, int, int]]:
    """Frame levels and floors -> [(start, stop, peak)] frame indices relative to levels.first
    (stop exclusive), in time order; peak is the loudest frame of the burst."""
    db = levels.db
    seed = loud(levels, cfg=cfg)
    sounding = sounding_frames(levels, cfg=cfg)
    min_len = max(1, round(cfg.min_event_s / frame_s))
    max_len = max(2 * min_len, int(cfg.max_event_s / frame_s))
    seeded = np.concatenate([[0], np.cumsum(seed)])
    spans = [(a, b) for a, b in runs(sounding) if seeded[b] > seeded[a]]
    out = []
    for a, b in merged(spans, gap=round(cfg.merge_gap_s / frame_s)):
        for c, d in _split_at_onsets(db, a, b, rise=cfg.onset_db, min_len=min_len):
            for e, f in _split_long(db, c, d, max_len=max_len, min_len=min_len):
                kept = np.flatnonzero(sounding[e:f])
                if len(kept) == 0:
                    continue
                start, stop = e + int(kept[0]), e + int(kept[-1]) + 1
                if stop - start >= min_len and seeded[stop] > seeded[start]:
                    out.append((start, stop, start + int(np.argmax(db[start:stop]))))
    return out


def sounding_frames(levels: Levels, *, cfg: DetectConfig) -> np.ndarray:
    """[frames] bool: more than extend_db over the noise floor (every loud frame is)."""
    return loud(levels, cfg=cfg, over_floor_db=min(cfg.extend_db, cfg.gate_db))


def merged(spans: list[tuple[int, int]], *, gap: int) -> list[tuple[int, int]]:
    """Spans [(start, stop)] in order, each joined to the one before when it starts less than `gap` after it stops."""
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if out and a - out[-1][1] < gap:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _split_at_onsets(db: np.ndarray, a: int, b: int, *, rise: float, min_len: int) -> list[tuple[int, int]]:
    """[a, b) cut before every frame whose level is >= `rise` dB above the lowest of the
    previous _ONSET_FRAMES frames, keeping pieces >= min_len frames."""
    seg = db[a:b]
    before = np.full(len(seg), np.inf)
    for k in range(1, _ONSET_FRAMES + 1):
        before[k:] = np.minimum(before[k:], seg[:-k])
    cuts = [0]
    for i in np.flatnonzero(seg - before >= rise).tolist():
        if i - cuts[-1] >= min_len and len(seg) - i >= min_len:
            cuts.append(i)
    return [(a + c, a + d) for c, d in zip(cuts, cuts[1:] + [len(seg)])]


def _split_long(db: np.ndarray, a: int, b: int, *, max_len: int, min_len: int) -> list[tuple[int, int]]:
    """[a, b) split at its quietest frame (pieces >= min_len) until no piece is longer than max_len."""
    if b - a <= max_len:
        return [(a, b)]
    cut = a + min_len + int(np.argmin(db[a + min_len: b - min_len + 1]))
    return _split_long(db, a, cut, max_len=max_len, min_len=min_len) + _split_long(db, cut, b, max_len=max_len, min_len=min_len)
