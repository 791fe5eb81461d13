"""Load on `respira serve`: predict throughput and latency, and /health latency under that load.

Starts its own server (`respira serve` in a subprocess on a free 127.0.0.1 port) with the model
given by --model, else the built-in "cough" model when it is installed, else a tiny untrained
bundle written to a temporary folder. Waits for /health, then sends --requests POSTs of
--clip-s second synthetic WAV clips to /api/v1/predict, --concurrency at a time, while a thread
polls /health every 50 ms and records its latency. The reference, measured in the same run:
/health latency with the server idle, and the time one clip takes through `Model.predict` in
this process (so `rps_vs_direct` says what the HTTP layer and the worker pool cost or gain).
Progress goes to stderr; the last line of stdout is one JSON object.

    python benchmarks/serve_load.py [--model cough] [--requests 500] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 16000
HEALTH_EVERY_S = 0.05
HOST = "127.0.0.1"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model name or bundle path (default: cough if installed, else a tiny bundle)")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--clip-s", type=float, default=5.0)
    p.add_argument("--workers", type=int, default=2, help="the server's worker threads")
    p.add_argument("--time-limit", type=float, default=300.0, help="stop sending requests after this many seconds")
    args = p.parse_args()
    if not (1 <= args.requests <= 100_000 and 1 <= args.concurrency <= 256 and 0 < args.clip_s <= 60):
        p.error("need 1 <= requests <= 100000, 1 <= concurrency <= 256, 0 < clip-s <= 60")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def choose_model(requested: str | None, tmp: Path) -> str:
    """The model to serve: as requested, else the built-in cough model, else a fresh tiny bundle."""
    from respira.bundle import builtin_names

    if requested:
        return requested
    if "cough" in builtin_names():
        return "cough"
    import torch

    from respira.bundle import BundleMeta, save_bundle
    from respira.features import FeatureConfig
    from respira.models import build_model

    torch.manual_seed(0)
    params = {"n_classes": 2, "in_channels": 1, "n_bins": 64}
    meta = BundleMeta(task="classification", classes=("cough", "other"), positive="cough",
                      features=FeatureConfig().to_dict(), model={"name": "compact_cnn", "params": params},
                      clip_s=1.0)
    path = tmp / "tiny.respira"
    save_bundle(path, [build_model("compact_cnn", **params).eval()], meta)
    return str(path)


def clips(n: int, *, seconds: float) -> list[bytes]:
    """`n` different WAV clips: noise beds with a cough, a wheeze or nothing, 16-bit 16 kHz."""
    import soundfile as sf

    from respira import testing

    out = []
    for i in range(n):
        events = [{"cough": 1}, {"wheeze": 1}, None][i % 3]
        y, _ = testing.scene(duration_s=seconds, events=events, seed=i)
        buffer = io.BytesIO()
        sf.write(buffer, y, SR, format="WAV", subtype="PCM_16")
        out.append(buffer.getvalue())
    return out


class Server:
    """`respira serve` in a subprocess; its output goes to a log file shown when it fails."""

    def __init__(self, model: str, *, port: int, workers: int, log_path: Path) -> None:
        self.url = f"http://{HOST}:{port}"
        self.log_path = log_path
        command = [sys.executable, "-c", "from respira.cli import main; main()", "serve", "--model", model,
                   "--host", HOST, "--port", str(port), "--workers", str(workers)]
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n{self.tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not answer /health within {timeout_s:g} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def poll_health(url: str, halt, results) -> None:
    """In a child process (so the load generator's GIL does not delay it): GET /health every
    HEALTH_EVERY_S on its own connection until `halt` is set; sends [latency ms], failures."""
    import httpx

    latencies, failures = [], 0
    with httpx.Client(timeout=10.0) as client:
        while not halt.is_set():
            t0 = time.perf_counter()
            try:
                ok = client.get(url + "/health").status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - t0) * 1000)
            failures += not ok
            halt.wait(max(0.0, HEALTH_EVERY_S - (time.perf_counter() - t0)))
    results.send((latencies, failures))


class HealthPoller:
    """`poll_health` in a spawned process: start(), then stop() -> ([latency ms], failures)."""

    def __init__(self, url: str) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._halt = context.Event()
        self._results, child_end = context.Pipe(duplex=False)
        self._process = context.Process(target=poll_health, args=(url, self._halt, child_end), daemon=True)

    def start(self) -> None:
        self._process.start()

    def stop(self) -> tuple[list[float], int]:
        self._halt.set()
        results = self._results.recv()
        self._process.join()
        return results


async def load(url: str, bodies: list[bytes], *, requests: int, concurrency: int, time_limit: float) -> dict:
    """POST the bodies round-robin, `concurrency` at a time; latencies (ms) of the answers and the error count."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    next_index = 0
    deadline = time.monotonic() + time_limit
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < requests and time.monotonic() < deadline:
            body = bodies[next_index % len(bodies)]
            next_index += 1
            t0 = time.perf_counter()
            try:
                r = await client.post(url + "/api/v1/predict", content=body)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:120]}")
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")
            latencies.append((time.perf_counter() - t0) * 1000)
            if len(latencies) % 100 == 0:
                log(f"  {len(latencies)} requests")

    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return {"latencies": latencies, "errors": errors, "wall_s": time.perf_counter() - t0}


def direct_ms_per_clip(model: str, bodies: list[bytes], *, n: int = 20) -> float:
    """Milliseconds per clip through `Model.predict` in this process (one clip at a time, after a warm-up)."""
    from respira.inference import load_model

    scorer = load_model(model)
    scorer.predict(bodies[0])
    t0 = time.perf_counter()
    for i in range(n):
        scorer.predict(bodies[i % len(bodies)])
    return (time.perf_counter() - t0) * 1000 / n


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else float("nan")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="respira-serve-load-") as tmp:
        tmp = Path(tmp)
        model = choose_model(args.model, tmp)
        bodies = clips(8, seconds=args.clip_s)
        direct_ms = direct_ms_per_clip(model, bodies)
        log(f"model {model}: {direct_ms:.1f} ms per {args.clip_s:g}-s clip in process")
        server = Server(model, port=free_port(), workers=args.workers, log_path=tmp / "server.log")
        try:
            server.wait_ready()
            idle = HealthPoller(server.url)
            idle.start()
            time.sleep(3.0)
            idle_ms, _ = idle.stop()
            log(f"server up at {server.url}; sending {args.requests} requests, {args.concurrency} at a time")
            poller = HealthPoller(server.url)
            poller.start()
            result = asyncio.run(load(server.url, bodies, requests=args.requests, concurrency=args.concurrency,
                                      time_limit=args.time_limit))
            busy_ms, health_failures = poller.stop()
        finally:
            server.stop()
    for error in sorted(set(result["errors"]))[:5]:
        log(f"  error: {error}")
    done = len(result["latencies"])
    rps = done / result["wall_s"]
    print(json.dumps({
        "requests": done,
        "errors": len(result["errors"]),
        "rps": round(rps, 2),
        "p50_ms": percentile(result["latencies"], 50),
        "p95_ms": percentile(result["latencies"], 95),
        "health_max_ms": round(max(busy_ms), 2) if busy_ms else None,
        "health_p95_ms": percentile(busy_ms, 95),
        "health_polls": len(busy_ms),
        "health_failures": health_failures,
        "health_idle_p95_ms": percentile(idle_ms, 95),
        "direct_ms_per_clip": round(direct_ms, 2),
        "rps_vs_direct": round(rps * direct_ms / 1000, 3),
        "model": Path(model).name,
        "clip_s": args.clip_s,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "wall_s": round(result["wall_s"], 2),
    }))


if __name__ == "__main__":
    main()
