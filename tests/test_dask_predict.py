"""`respira predict` on a Dask cluster: the rows and failures of one process in the same order, a batch
whose worker keeps dying reported as failures of its files, the CLI's cluster options, and nothing of
Dask imported without them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_models import tiny_bundle, tone_clip, write_clip

import respira.predict
from respira.cli import main
from respira.predict import predict_files

pytest.importorskip("distributed")

ARGS = ("clips/sub/s1.wav", "clips", "broken.wav", "missing.wav", "late.wav")
"""Relative names, a file also found in a folder (scored once), an unreadable file and a missing one."""
_ORIGINAL = {}  # in a worker: respira.predict._predict_batch before a hook replaced it


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Ten clips of 0.5 to 2.5 s (some of several windows), a broken file and a tiny bundle."""
    d = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(3)
    names = [f"clips/c{k}.wav" for k in range(5)] + [f"clips/sub/s{k}.wav" for k in range(3)] + ["late.wav"]
    for k, name in enumerate(names):
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        write_clip(d / name, tone_clip(200 + 450 * k, 0.5 + 0.25 * k, rng=rng) * (0.2 + 0.1 * k))
    (d / "broken.wav").write_bytes(b"RIFF\x00\x00")
    tiny_bundle(d / "tiny.respira")
    return d


@pytest.fixture
def small_tasks(root, monkeypatch):
    """In `root`, and 4 clips (2 chunks of --batch-size 2) per task: several tasks for a few clips."""
    monkeypatch.chdir(root)
    monkeypatch.setattr(respira.predict, "CLIPS_PER_TASK", 4)


@pytest.fixture(scope="module")
def client():
    """A running cluster of 2 worker processes whose scheduler gives up on a task at its first dead worker."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
    with cluster, Client(cluster) as c:
        yield c


def test_two_local_workers_print_what_one_process_prints(root, small_tasks, capsys):
    args = ("predict", "tiny.respira", *ARGS, "--format", "csv", "--batch-size", "2")
    one = _cli(capsys, *args)
    assert one[0] == 1 and len(one[1].splitlines()) == 1 + 9
    assert [line.split(",")[0] for line in one[1].splitlines()[1:3]] == ["clips/sub/s1.wav", "clips/c0.wav"]
    assert "unreadable: broken.wav: " in one[2] and "unreadable: missing.wav: no such file or folder" in one[2]
    assert _cli(capsys, *args, "--workers", "2") == one


def test_a_batch_whose_worker_dies_fails_its_files_and_the_others_are_scored(root, small_tasks, client):
    expected = predict_files("tiny.respira", ARGS, batch_size=2)
    assert predict_files("tiny.respira", ARGS, batch_size=2, scheduler=client.scheduler.address) == expected
    client.run(_die_with, "c2.wav")  # in the first task: s1, c0, c1, c2
    got = predict_files("tiny.respira", ARGS, batch_size=2, scheduler=client.scheduler.address)
    lost = ["clips/sub/s1.wav", "clips/c0.wav", "clips/c1.wav", "clips/c2.wav"]
    assert got.records == [r for r in expected.records if r["file"] not in lost]
    missing, *dead, broken = got.failures
    assert [missing, broken] == list(expected.failures)
    assert [f.split(": ")[0] for f in dead] == lost and all("its worker died each time it ran it" in f for f in dead)


def test_cli_cluster_options_are_checked(root, small_tasks, capsys):
    code, out, err = _cli(capsys, "predict", "tiny.respira", "late.wav", "--workers", "0")
    assert (code, out, err) == (2, "", "error: --workers must be at least 1 (got 0)\n")
    code, out, err = _cli(capsys, "predict", "tiny.respira", "late.wav", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2 and out == "" and err.startswith("error: give one of --workers") and len(err.splitlines()) == 1


def test_without_cluster_options_nothing_of_dask_is_imported(root):
    script = ("import sys\nfrom respira.cli import main\ntry:\n"
              "    main(['predict', 'tiny.respira', 'clips', '--format', 'csv'])\n"
              "except SystemExit as e:\n    assert e.code == 0, e.code\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --- helpers; the hook runs in the workers (which import this module by name) ---------------


def _die_with(name: str) -> None:
    """From now on a worker that gets a task holding the clip `name` dies (workers look the task's
    function up by name, so they run the replacement)."""
    original = _ORIGINAL.setdefault("_predict_batch", respira.predict._predict_batch)

    def dying(batch, report):
        if any(Path(path).name == name for _, path in batch.clips):
            os._exit(1)
        return original(batch, report)

    respira.predict._predict_batch = dying


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err
