"""`DetectConfig`: every setting of the long-recording detector, one frozen dataclass, and how a
run's settings are chosen: DetectConfig's defaults < the job's (a live monitor's block_s) < the
model's decision threshold < FILE.yaml's `detect:` section < `--set detect.key=value` < options
such as `--threshold`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from respira.errors import ConfigError
from respira.settings import build, read_settings


@dataclass(frozen=True)
class DetectConfig:
    """How a long recording becomes events.

    Reading: the file is streamed in blocks of `block_s` seconds. Energy: frame levels (dBFS)
    over `gate_frame_s` frames, high-passed at `gate_highpass_hz` (0: off); the noise floor
    is the `gate_percentile`-th percentile of the last `gate_floor_s` seconds of frames
    (updated every `gate_floor_step_s`). A frame is *loud* when its level exceeds
    max(floor + `gate_db`, `gate_min_dbfs`), *sounding* when it exceeds floor + `extend_db`.
    Gate: only windows within `gate_pad_s` of a loud frame are scored (`gate=False`: every
    window is scored). Windows: `window_s` seconds (None: the model's clip_s) every
    `hop_s` seconds; `batch_size` windows per call to the scorer. An ensemble's first member
    screens every window; the windows where it gives the positive class at least `screen` get
    the whole ensemble's score, the others keep its own (below `screen`, so thresholds at or
    above `screen` see the ensemble's scores alone).

    Events (energy bursts, one per cough): runs of sounding frames that hold a loud frame;
    runs less than `merge_gap_s` apart are joined, then split where a new burst starts (the
    level jumps by `onset_db` within 40 ms) and where longer than `max_event_s` (at the
    quietest frame), trimmed to their sounding frames and dropped when shorter than
    `min_event_s`. Each is scored with the highest positive-class probability of the windows
    centred within `hop_s` of its loudest frame. Candidates with score >= min(`candidate_floor`,
    `threshold`) are kept; events are the candidates with score >= `threshold`, so the events
    at any higher threshold are exactly the candidates above it. Events less than
    `bout_gap_s` apart form one bout.
    """

    block_s: float = 60.0
    window_s: float | None = None
    hop_s: float = 0.25
    gate: bool = True
    gate_frame_s: float = 0.02
    gate_highpass_hz: float = 150.0
    gate_floor_s: float = 30.0
    gate_floor_step_s: float = 1.0
    gate_percentile: float = 10.0
    gate_db: float = 8.0
    extend_db: float = 3.0
    gate_min_dbfs: float = -70.0
    gate_pad_s: float = 0.5
    screen: float = 0.2
    threshold: float = 0.5
    candidate_floor: float = 0.05
    merge_gap_s: float = 0.15
    onset_db: float = 25.0
    min_event_s: float = 0.1
    max_event_s: float = 1.5
    bout_gap_s: float = 2.0
    batch_size: int = 64

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return dataclasses.asdict(self)

    def segmentation(self) -> dict[str, Any]:
        """The settings that shape candidates (all but threshold and bout_gap_s): a resumed
        result is reusable exactly when these match."""
        return {k: v for k, v in self.to_dict().items() if k not in ("threshold", "bout_gap_s", "batch_size")}


def model_threshold(scorer: Any) -> float:
    """The event threshold a model detects with by default: its bundle's decision threshold (0.5
    for a scorer without one)."""
    meta = getattr(scorer, "meta", None)
    return float(meta.thresholds.get("decision", 0.5)) if meta is not None else 0.5


def detect_settings(config_file: str | os.PathLike | None = None, overrides: Sequence[str] = (),
                    **options: Any) -> dict[str, Any]:
    """The detector settings a user asks for, checked now: the `detect:` section of the YAML file
    `config_file`, then `detect.key=value` overrides, then `options` (command-line options such
    as threshold=0.9; None: not given). ConfigError names the key (or the option) at fault."""
    raw = read_settings(config_file, overrides, sections=("detect",))["detect"]
    build(DetectConfig, raw, prefix="detect")
    given = {k: v for k, v in options.items() if v is not None}
    for key, value in given.items():
        try:
            build(DetectConfig, {**raw, key: value}, prefix="detect")
        except ConfigError as e:
            raise ConfigError(f"--{key.replace('_', '-')} {value}: {e}") from None
    return {**raw, **given}


def detect_config(scorer: Any, settings: Mapping[str, Any] | None = None, **defaults: Any) -> DetectConfig:
    """The DetectConfig a run of `scorer` uses: `settings` (from `detect_settings`, or any mapping of
    DetectConfig keys) over the model's decision threshold over the job's `defaults`."""
    return build(DetectConfig, {**defaults, "threshold": model_threshold(scorer), **(settings or {})}, prefix="detect")


def _problems(c: DetectConfig) -> list[str]:
    positive = ("block_s", "hop_s", "gate_frame_s", "gate_floor_s", "gate_floor_step_s", "min_event_s", "max_event_s")
    rules = [(getattr(c, k) > 0 and math.isfinite(getattr(c, k)), f"detect.{k}: must be > 0, got {getattr(c, k)}")
             for k in positive]
    rules += [
        (c.window_s is None or c.window_s > 0, f"detect.window_s: must be > 0 or None, got {c.window_s}"),
        (0 <= c.gate_percentile <= 100, f"detect.gate_percentile: must be in [0, 100], got {c.gate_percentile}"),
        (c.gate_floor_s >= c.gate_floor_step_s, "detect.gate_floor_s: must be >= gate_floor_step_s"),
        (c.gate_highpass_hz >= 0, f"detect.gate_highpass_hz: must be >= 0, got {c.gate_highpass_hz}"),
        *[(getattr(c, k) >= 0, f"detect.{k}: must be >= 0, got {getattr(c, k)}")
          for k in ("gate_db", "extend_db", "gate_pad_s", "merge_gap_s", "bout_gap_s")],
        (c.onset_db > 0, f"detect.onset_db: must be > 0, got {c.onset_db}"),
        *[(0 <= getattr(c, k) <= 1, f"detect.{k}: must be in [0, 1], got {getattr(c, k):g}")
          for k in ("candidate_floor", "screen", "threshold")],
        (c.max_event_s >= 2 * c.min_event_s, "detect.max_event_s: must be >= 2 * min_event_s"),
        (c.batch_size >= 1, f"detect.batch_size: must be >= 1, got {c.batch_size}"),
    ]
    return [message for ok, message in rules if not ok]
