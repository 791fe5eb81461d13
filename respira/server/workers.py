"""The worker pool: model work runs in a few threads, so the event loop (and /health) stays responsive."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from respira.server.api_errors import ApiError

T = TypeVar("T")


class WorkerPool:
    """`workers` jobs run at once, each in a thread; up to `max_queue` more requests may be
    admitted (uploading or waiting); beyond that a request gets 503 at once.

    While started, torch uses cpu_count // workers threads per operation, so that the jobs
    together do not oversubscribe the CPU and starve the event loop.
    """

    def __init__(self, *, workers: int, max_queue: int) -> None:
        self.workers, self.max_queue = workers, max_queue
        self._admitted = 0
        self._limiter = None
        self._torch_threads: int | None = None

    def start(self) -> None:
        """Call inside the event loop (the app's lifespan) before the first job."""
        import anyio
        import torch

        self._limiter = anyio.CapacityLimiter(self.workers)
        self._torch_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.workers))

    def stop(self) -> None:
        import torch

        if self._torch_threads is not None:
            torch.set_num_threads(self._torch_threads)
        self._limiter = self._torch_threads = None

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold one place for a request from before its upload until its answer; 503 when full."""
        if self._admitted >= self.workers + self.max_queue:
            raise ApiError(503, f"busy: {self._admitted} requests are in progress; try again shortly",
                           headers={"Retry-After": "1"})
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """fn(*args, **kwargs) in a worker thread, once one is free."""
        import anyio.to_thread

        if self._limiter is None:
            raise RuntimeError("the worker pool is not started (run the app with its lifespan)")
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._limiter)
