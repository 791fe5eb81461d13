"""Resuming: the state of a file in progress (after each block) and the result of a finished file.

In progress: a folder with state.npz (the small carried state, rewritten after each block)
and chunk-NNNNNN.npz (what block N added: frame levels and window scores, written once),
so the bytes written grow with the file, not with its square. Finished: one .npz with the
score track and the candidates as JSON. Files are written atomically (a temp file of the
writer's own + rename), so two processes writing the same file (a Dask task run again while
the first run is still alive) never mix their bytes. Only arrays and JSON text are stored;
loading never unpickles.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np

from respira.detect.events import events_from_dicts
from respira.detect.gate import GateState
from respira.detect.state import Chunk, FileResult, StreamState
from respira.errors import DataError

_STATE = "state.npz"


def save_state(directory: str | os.PathLike, state: StreamState) -> None:
    """Write the latest block's chunk, then the carried state, into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    index = len(state.chunks) - 1
    if index >= 0:
        c = state.chunks[index]
        _save(directory / f"chunk-{index:06d}.npz", db=c.db, floor=c.floor, scores=c.scores)
    gate = {f"gate_{k}": v for k, v in state.gate.to_arrays().items()}
    counters = np.array([state.blocks, state.samples, state.next_window, state.buffer_start, state.loud_start, len(state.chunks)])
    _save(directory / _STATE, counters=counters, buffer=state.buffer, loud_tail=state.loud_tail, **gate)


def load_state(directory: str | os.PathLike) -> StreamState | None:
    """The state saved in `directory`, or None when there is none (a fresh start)."""
    directory = Path(directory)
    if not (directory / _STATE).is_file():
        return None
    a = _load(directory / _STATE)
    blocks, samples, next_window, buffer_start, loud_start, n_chunks = (int(v) for v in a["counters"])
    chunks = []
    for i in range(n_chunks):
        c = _load(directory / f"chunk-{i:06d}.npz")
        chunks.append(Chunk(c["db"], c["floor"], c["scores"]))
    gate = GateState.from_arrays({k.removeprefix("gate_"): v for k, v in a.items() if k.startswith("gate_")})
    return StreamState(gate, blocks, samples, next_window, a["buffer"].astype(np.float32), buffer_start,
                       a["loud_tail"].astype(bool), loud_start, chunks)


def clear_state(directory: str | os.PathLike) -> None:
    """Remove a file's in-progress folder (after it is done, or to start afresh)."""
    shutil.rmtree(directory, ignore_errors=True)


def save_result(result: FileResult, path: str | os.PathLike) -> None:
    """Write a finished file's result (score track + candidates) to `path` (.npz)."""
    meta = {
        "file": result.file, "hop_s": result.hop_s, "window_s": result.window_s, "duration_s": result.duration_s,
        "active_s": result.active_s, "candidates": [{**e.to_dict(), "score": e.score} for e in result.candidates],
    }
    _save(Path(path), scores=result.scores, meta=np.array(json.dumps(meta)))


def load_result(path: str | os.PathLike, *, threshold: float) -> FileResult:
    """A result written by `save_result`, with events taken at `threshold`."""
    a = _load(Path(path))
    meta = json.loads(str(a["meta"]))
    return FileResult(meta["file"], tuple(events_from_dicts(meta["candidates"])), a["scores"], meta["hop_s"],
                      meta["window_s"], meta["duration_s"], meta["active_s"], threshold)


def with_file(result: FileResult, file: str) -> FileResult:
    """The same result naming `file` (a resumed file given under another path spelling)."""
    return replace(result, file=file, candidates=tuple(replace(e, file=file) for e in result.candidates))


def _save(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable progress file ({e}); delete it or run with --no-resume") from None
