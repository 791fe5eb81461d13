"""One function over many files on a Dask cluster: local worker processes, or a running cluster.

`Cluster(workers=N)` starts N local worker processes, each running one file at a time with
cores // N torch/OpenMP threads (N files at once, no core oversubscribed); `Cluster(scheduler=
"tcp://host:8786")` uses a running cluster (`dask scheduler` + `dask worker`, dask-jobqueue,
dask-kubernetes), each worker as it was started (Dask's default: one OpenMP thread per worker
thread). Both go through one client and `map_files`. Items are independent tasks: when a
worker dies, Dask runs its item again elsewhere, so a task must be idempotent (return its
result, or write only atomically). Workers open the files by the paths given, so they must see
the client's filesystem. Dask is imported only when a cluster is used (`pip install 'respira[dask]'`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from respira.errors import ConfigError, RespiraError

T = TypeVar("T")
R = TypeVar("R")
Report = Callable[[float], None]
"""Called in a task with an amount just done (e.g. seconds of audio)."""

CONNECT_TIMEOUT_S = 10.0
_REPORT_EVERY_S = 0.5
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_cache: dict[Hashable, Any] = {}
_cache_lock = threading.Lock()


class WorkerLost(RespiraError):
    """An item whose worker died each time it ran it (Dask's distributed.scheduler.allowed-failures)."""


@dataclass(frozen=True)
class Cluster:
    """Where `map_files` runs: `workers` local processes, or the running cluster at `scheduler`."""

    workers: int | None = None
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if (self.workers is None) == (self.scheduler is None):
            raise ConfigError("give one of --workers (a local cluster) and --scheduler (a running one)")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1 (got {self.workers})")

    @classmethod
    def of(cls, *, workers: int | None, scheduler: str | None) -> Cluster | None:
        """The cluster these options name, or None (run in this process) when neither is given."""
        return None if workers is None and scheduler is None else cls(workers, scheduler)


def map_files(fn: Callable[[T, Report], R], items: Sequence[T], *, cluster: Cluster,
              progress: Report | None = None) -> Iterator[tuple[int, R | WorkerLost]]:
    """(index, fn(item, report)) for each of `items` as it finishes (in any order), computed on `cluster`.

    fn: a module-level function (workers import it by name) that runs on a worker; report(amount)
    adds to the progress, and an item run again after its worker died counts once (its largest
    total). progress(amount): the amount newly done, called here (from this thread or Dask's
    client thread). An item whose workers kept dying gives a WorkerLost; an exception raised by fn is
    raised here and the remaining items are cancelled. No cluster is started for no items.
    ConfigError when Dask is missing or the scheduler cannot be reached.
    """
    if not items:
        return
    with _client(cluster) as client:
        yield from _gather(client, fn, items, progress)


def cached(key: Hashable, load: Callable[[], Any]) -> Any:
    """load() once per process and key: a worker's model, loaded with its first file, kept for the next."""
    with _cache_lock:
        if key not in _cache:
            _cache[key] = load()
        return _cache[key]


@contextmanager
def _client(cluster: Cluster) -> Iterator[Any]:
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--workers and --scheduler need Dask: pip install 'respira[dask]'") from None
    if cluster.scheduler is None:
        with _local(cluster.workers) as local, Client(local) as client:
            yield client
        return
    try:
        client = Client(cluster.scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as e:
        raise ConfigError(f"cannot reach the Dask scheduler at {cluster.scheduler}: {e}") from None
    with client:
        yield client


def _local(workers: int) -> Any:
    """`workers` processes with one task slot each and cores // workers OpenMP (torch) threads.

    Without Dask's MALLOC_TRIM_THRESHOLD_, which fixes glibc's mmap threshold at 128 kB: every
    block-sized array then costs fresh pages, and detection ran up to 2x slower."""
    import dask
    from dask.system import CPU_COUNT
    from distributed import LocalCluster

    threads = str(max(1, CPU_COUNT // workers))
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                            env=dict.fromkeys(_THREAD_VARIABLES, threads))


def _gather(client: Any, fn: Callable, items: Sequence, progress: Report | None) -> Iterator[tuple[int, Any]]:
    from distributed import KilledWorker, as_completed

    topic = f"respira-{uuid.uuid4().hex[:12]}"
    totals = _Totals(progress)
    if progress is not None:
        client.subscribe_topic(topic, totals.event)
    name = getattr(fn, "__name__", "task")
    futures = {client.submit(_task, fn, item, index, topic if progress else None, key=f"{name}-{index}-{topic}",
                             pure=False): index for index, item in enumerate(items)}
    try:
        for future in as_completed(list(futures)):
            index = futures.pop(future)
            try:
                result, total = future.result()
            except KilledWorker as e:
                yield index, WorkerLost(f"its worker died each time it ran it (out of memory, or killed?): {e}")
                continue
            totals.add(index, total)
            yield index, result
    finally:
        client.cancel(list(futures))
        if progress is not None:
            client.unsubscribe_topic(topic)


def _task(fn: Callable, item: Any, index: int, topic: str | None) -> tuple[Any, float]:
    """On a worker: fn(item, report) and the total it reported, its progress sent under `topic`."""
    reporter = _Reporter(topic, index)
    return fn(item, reporter), reporter.total


class _Reporter:
    """A task's running total, sent as (index, total) at most every _REPORT_EVERY_S."""

    def __init__(self, topic: str | None, index: int) -> None:
        self.topic, self.index, self.total, self.sent = topic, index, 0.0, time.monotonic()

    def __call__(self, amount: float) -> None:
        self.total += amount
        if time.monotonic() - self.sent >= _REPORT_EVERY_S:
            self.send()

    def send(self) -> None:
        if self.topic is not None:
            from distributed import get_worker

            get_worker().log_event(self.topic, [self.index, self.total])
            self.sent = time.monotonic()


class _Totals:
    """On the client: each item's largest total so far; passes on only what grew."""

    def __init__(self, progress: Report | None) -> None:
        self.progress, self.totals, self.lock = progress, {}, threading.Lock()

    def event(self, event: tuple[float, list]) -> None:
        self.add(*event[1])

    def add(self, index: int, total: float) -> None:
        with self.lock:
            grown = total - self.totals.get(index, 0.0)
            if grown > 0:
                self.totals[index] = total
        if grown > 0 and self.progress is not None:
            self.progress(grown)
