"""Detection throughput on a Dask cluster: the same recordings through `respira.detect.job.detect`
in one process, then on 1 and on 2 local worker processes (`--workers`), in one run.

Usage: python benchmarks/detect_scale.py [--files 8] [--minutes 15] [--workers 1,2] [--model NAME_OR_BUNDLE]
       [--audio-dir DIR] [FILE ...]

Recordings: FILEs when given, else `--files` synthetic ones of `--minutes` of continuous sound
(babble and coughs over a noise bed, so the gate stays open and the model runs; made once in
`--audio-dir` by benchmarks/detect.py's `write_continuous`). Each configuration runs from
scratch (resume off, its own output folder); its wall time includes starting the workers and
loading the model in each (`start_s`: until the first progress report, mostly that).
rtf = hours of audio per hour of wall time; speedup = rtf of the most workers / rtf of 1 worker;
`identical`: every configuration wrote the events.csv of the one process. Progress on stderr;
the last stdout line is one JSON object (keys in `main`). Default model: the built-in `cough`.

How throughput grows, and where it stops. Files are independent tasks, so throughput is the
sum of the workers' own rates while every worker has a file to do:
- On one machine, workers only share out the same cores (N workers x cores // N threads). They
  gain where one process cannot keep its cores busy (Python between model calls, decoding,
  small models that thread poorly), and lose each worker's start (~5-10 s on a loaded machine:
  a process, torch, the model): worth it for hours of audio, not for minutes.
- Across machines it grows with the cores added, until one of these is the bottleneck:
  * the files: a file is the unit of work (never split), so there are never more busy workers
    than files left, and the longest file sets the least wall time (an 8-h night at rtf ~500 is
    about a minute on 2 cores);
  * decoding and the disk: every worker reads its files from storage they all see. 16-bit
    16-kHz mono WAV is 32 kB per second of audio: ~120 MB/s read per process on a quiet night
    (rtf ~3,700), ~16 MB/s with the gate open (rtf ~500), 5.5x that for 44.1-kHz stereo
    originals. A shared NFS or object-store mount of ~1 GB/s is full with ~8 processes on quiet
    nights; compressed input (FLAC, Opus, MP3 through PyAV) reads less but moves the limit to
    each worker's decoder (one decoding thread per file);
  * the client: it reads the results back (a score per 0.25 s: ~0.5 MB per 8-h night) and
    writes events, label tracks, a timeline PNG per file and the report itself, one file at a
    time (a fraction of a second per file): thousands of files add minutes at the end;
  * the scheduler: ~1 ms per task, negligible for files of minutes to hours; it matters only for
    many short clips (`predict`), which should then go in batches of clips per task.

Starting a cluster. Workers open the recordings and write OUT/progress by the paths the client
gives, so every machine must see the same paths (a shared file system, or the same mount in
every container):
    dask scheduler                                   # on one machine: tcp://HOST:8786, dashboard :8787
    OMP_NUM_THREADS=1 dask worker tcp://HOST:8786 --nworkers 16 --nthreads 1   # on each machine
    respira detect /data/nights -o /data/out --scheduler tcp://HOST:8786
Dask gives each worker process one OpenMP (torch) thread by default: one process per core as
above, or fewer processes with more threads each (OMP_NUM_THREADS=4 ... --nworkers 4 on 16
cores). Each worker holds one model and a file's blocks (~0.4-0.5 GB). On SLURM or PBS,
dask-jobqueue starts the workers as batch jobs:
    from dask_jobqueue import SLURMCluster             # PBSCluster, SGECluster, LSFCluster alike
    cluster = SLURMCluster(cores=16, processes=16, memory="32GB", walltime="02:00:00")
    cluster.scale(jobs=8)                             # 8 nodes x 16 workers
    respira.detect.detect(paths, out=out, scheduler=cluster.scheduler_address)
and on Kubernetes, dask-kubernetes (`KubeCluster(name="respira", image=IMAGE, n_workers=32)`,
an image with respira installed and the data mounted at the same path).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
SR = 16000


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def synthetic_files(folder: Path, *, files: int, minutes: float) -> list[str]:
    """`files` WAVs of `minutes` of continuous sound in `folder`, made unless already there."""
    sys.path.insert(0, str(BENCHMARKS))
    from detect import write_continuous  # benchmarks/detect.py

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(files):
        path = folder / f"continuous-{minutes:g}min-{k}.wav"
        if not path.is_file():
            _log(f"writing {path} ...")
            partial = path.with_name(path.stem + ".partial.wav")
            write_continuous(partial, hours=minutes / 60, seed=k)
            os.replace(partial, path)
        paths.append(str(path))
    return paths


def measure(files: list[str], *, model: str, out: Path, workers: int | None) -> dict:
    """One run from scratch: wall seconds, seconds until the first progress report, audio seconds."""
    from respira.detect.job import detect

    first: list[float] = []
    start = time.perf_counter()

    def progress(seconds: float, total: float) -> None:
        if not first:
            first.append(time.perf_counter() - start)

    run = detect(files, out=out, model=model, resume=False, progress=progress, workers=workers)
    wall = time.perf_counter() - start
    if run.failures:
        raise SystemExit(f"failed: {run.failures}")
    audio_s = sum(r.duration_s for r in run.results)
    _log(f"{'in process' if workers is None else f'{workers} worker(s)'}: {audio_s / 3600:.2f} h in {wall:.1f} s "
         f"(rtf {audio_s / wall:.0f}, first progress after {first[0] if first else wall:.1f} s)")
    return {"wall_s": wall, "start_s": first[0] if first else wall, "audio_s": audio_s,
            "events": (out / "events.csv").read_text()}


def _key(workers: int | None) -> str:
    return "in_process" if workers is None else f"{workers}_worker{'s' if workers > 1 else ''}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="recordings to use (default: synthetic ones)")
    parser.add_argument("--files", dest="n_files", type=int, default=8, help="synthetic recordings")
    parser.add_argument("--minutes", type=float, default=15.0, help="length of each synthetic recording")
    parser.add_argument("--workers", default="1,2", help="local worker counts, comma-separated")
    parser.add_argument("--model", default="cough", help="built-in model name or bundle path")
    parser.add_argument("--audio-dir", type=Path, help="where the synthetic recordings are kept (default: a temp dir)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI sets it, before torch is imported
    counts = [int(n) for n in args.workers.split(",")]

    from dask.system import CPU_COUNT

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="respira-bench-scale-") as tmp:
        tmp = Path(tmp)
        files = args.files or synthetic_files(args.audio_dir or tmp / "audio", files=args.n_files, minutes=args.minutes)
        r = {_key(n): measure(files, model=args.model, out=tmp / f"out-{_key(n)}", workers=n) for n in [None, *counts]}
    rtf = {k: m["audio_s"] / m["wall_s"] for k, m in r.items()}
    hours = r["in_process"]["audio_s"] / 3600
    out = {
        "files": len(files),
        "hours": round(hours, 3),
        "model": args.model,
        "cores": CPU_COUNT,
        **{f"rtf_{k}": round(v, 1) for k, v in rtf.items()},
        "speedup": round(rtf[_key(max(counts))] / rtf[_key(min(counts))], 2),
        **{f"start_s_{k}": round(m["start_s"], 1) for k, m in r.items()},
        **{f"wall_s_{k}": round(m["wall_s"], 1) for k, m in r.items()},
        "identical": all(m["events"] == r["in_process"]["events"] for m in r.values()),
        "load_avg": [round(v, 2) for v in load_before],
        "load_avg_end": [round(v, 2) for v in os.getloadavg()],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
