"""Detection on a Dask cluster: the outputs of one process, a file whose worker is killed run again
elsewhere with no event lost or doubled, re-runs that skip finished files, the CLI's cluster
options, and nothing of Dask imported without them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tiny_models import tiny_bundle

from respira import audio
from respira.detect.job import detect
from respira.testing import scene

pytest.importorskip("distributed")

SR = 16000
SETTINGS = {"threshold": 0.0, "block_s": 5.0}  # every burst an event; several blocks per file
SECONDS = (20.0, 12.0, 30.0, 16.0)
OUTPUTS = ("events.csv", "candidates.csv", "events.json", "summary.json", "params.json", "audacity/r2.txt", "raven/r0.txt")
_ORIGINAL = {}  # in a worker: respira.detect.job.detect_file before a hook replaced it


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> tuple[list[str], str]:
    """Four synthetic recordings with coughs and a word, and a tiny bundle."""
    d = tmp_path_factory.mktemp("dask")
    files = []
    for k, seconds in enumerate(SECONDS):
        path = d / "rec" / f"r{k}.wav"
        path.parent.mkdir(exist_ok=True)
        audio.write_wav(path, scene(duration_s=seconds, events={"cough": 3, "speech": 1}, seed=20 + k)[0], sample_rate=SR)
        files.append(str(path))
    return files, str(tiny_bundle(d / "tiny.respira"))


@pytest.fixture(scope="module")
def reference(recordings, tmp_path_factory) -> Path:
    """What one process writes."""
    files, bundle = recordings
    out = tmp_path_factory.mktemp("one")
    detect(files, out=out, model=bundle, settings=SETTINGS)
    return out


@pytest.fixture(scope="module")
def client():
    """A running cluster of 2 worker processes (what --scheduler sends files to)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def _same_outputs(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        assert (a / name).read_text() == (b / name).read_text(), name


def test_two_local_workers_write_what_one_process_writes(recordings, reference, tmp_path):
    files, bundle = recordings
    seen = []
    run = detect(files, out=tmp_path, model=bundle, settings=SETTINGS, workers=2,
                 progress=lambda seconds, total: seen.append((seconds, total)))
    _same_outputs(reference, tmp_path)
    assert [r.file for r in run.results] == files and not run.failures and run.events
    assert sum(s for s, _ in seen) == pytest.approx(sum(SECONDS)) and {t for _, t in seen} == {sum(SECONDS)}


def test_a_file_whose_worker_is_killed_runs_again_elsewhere_with_nothing_lost_or_doubled(
        recordings, reference, client, tmp_path):
    files, bundle = recordings
    marks = tmp_path / "marks"
    marks.mkdir()
    client.wait_for_workers(2)
    client.run(_hold_first_run_of, "r2.wav", str(marks))
    workers = set(client.run(os.getpid).values())
    killed = []

    def kill_the_holder() -> None:
        pid = int(_wait_for(marks / "pid").read_text())
        killed.append((pid, sorted(p.name for p in (tmp_path / "out" / "progress").glob("r2-*.partial/state.npz"))))
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_holder)
    killer.start()
    run = detect(files, out=tmp_path / "out", model=bundle, settings=SETTINGS, scheduler=client.scheduler.address)
    killer.join()
    ((pid, state),) = killed
    assert pid in workers and state == ["state.npz"]  # a worker, killed after r2.wav's first block
    assert not run.failures
    _same_outputs(reference, tmp_path / "out")


def test_a_rerun_runs_only_the_files_not_done(recordings, reference, client, tmp_path):
    files, bundle = recordings
    scheduler = client.scheduler.address
    detect(files, out=tmp_path, model=bundle, settings=SETTINGS, scheduler=scheduler)
    (stale,) = (tmp_path / "progress").glob("r1-*.npz")
    stale.unlink()
    client.wait_for_workers(2)
    client.run(_log_runs, str(tmp_path / "runs"))
    seen = []
    detect(files, out=tmp_path, model=bundle, settings=SETTINGS, scheduler=scheduler,
           progress=lambda seconds, total: seen.append(seconds))
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r1.wav"]
    assert sum(seen) == pytest.approx(sum(SECONDS))
    _same_outputs(reference, tmp_path)
    # all done: no cluster is needed, not even a reachable one
    detect(files, out=tmp_path, model=bundle, settings=SETTINGS, scheduler=f"tcp://127.0.0.1:{_free_port()}")
    _same_outputs(reference, tmp_path)


def test_cli_detect_with_a_scheduler(recordings, reference, client, tmp_path, capsys):
    files, bundle = recordings
    code, stdout, _ = _cli(capsys, "detect", *files, "-m", bundle, "-o", str(tmp_path), "--threshold", "0",
                           "--set", "detect.block_s=5", "--scheduler", client.scheduler.address)
    assert code == 0 and "report.html" in stdout
    assert (tmp_path / "events.csv").read_text() == (reference / "events.csv").read_text()


def test_cli_cluster_options_are_checked(recordings, tmp_path, capsys, monkeypatch):
    import respira.cluster

    files, bundle = recordings
    args = ("detect", files[1], "-m", bundle, "-o", str(tmp_path))
    code, _, err = _cli(capsys, *args, "--workers", "0")
    assert code == 2 and "--workers" in err
    code, _, err = _cli(capsys, *args, "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786")
    assert code == 2 and err.strip().startswith("error: give one of --workers") and "Traceback" not in err
    monkeypatch.setattr(respira.cluster, "CONNECT_TIMEOUT_S", 1.0)
    address = f"tcp://127.0.0.1:{_free_port()}"
    code, _, err = _cli(capsys, *args, "--scheduler", address)
    assert code == 2 and err.strip().startswith(f"error: cannot reach the Dask scheduler at {address}")
    assert len(err.strip().splitlines()) == 1


def test_without_cluster_options_nothing_of_dask_is_imported(recordings, tmp_path):
    files, bundle = recordings
    script = (f"import sys\nfrom respira.cli import main\ntry:\n"
              f"    main(['detect', {files[1]!r}, '-m', {bundle!r}, '-o', {str(tmp_path)!r}])\n"
              f"except SystemExit as e:\n    assert e.code == 0, e.code\n"
              f"print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --- helpers; the hooks run in the workers (which import this module by name) ---------------


def _hold_first_run_of(name: str, marks: str) -> None:
    """The first run of `name` on the cluster stops after its first block (saved), writes its
    process id to marks/pid and waits to be killed; later runs go through."""
    def hold(path: str) -> None:
        if Path(path).name == name and _first(Path(marks) / "held"):
            (Path(marks) / "pid.tmp").write_text(str(os.getpid()))
            os.replace(Path(marks) / "pid.tmp", Path(marks) / "pid")
            time.sleep(120)

    _hook(hold)


def _log_runs(folder: str) -> None:
    """Each file run from now on leaves a file of its name in `folder`."""
    def log(path: str) -> None:
        Path(folder).mkdir(exist_ok=True)
        (Path(folder) / Path(path).name).touch()

    _hook(log)


def _hook(after_first_block) -> None:
    """respira.detect.job.detect_file calling after_first_block(path) after a file's first block."""
    import respira.detect.job as job

    original = _ORIGINAL.setdefault("detect_file", job.detect_file)

    def hooked(path, scorer, cfg, *, progress=None, checkpoint=None):
        blocks = []

        def report(seconds: float) -> None:
            progress(seconds)
            blocks.append(seconds)
            if len(blocks) == 1:
                after_first_block(path)

        return original(path, scorer, cfg, progress=report, checkpoint=checkpoint)

    job.detect_file = hooked


def _first(marker: Path) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False


def _wait_for(path: Path, timeout: float = 60.0) -> Path:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from respira.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err
