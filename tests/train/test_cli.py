"""`python -m star_jax.train` as a process: killed by SIGTERM after a save, it saves where it
is and exits 143, and the same command resumes with the losses of an uninterrupted run bit for
bit; two processes on localhost (jax.distributed, CPU) give the one-process losses; a config typo
is one line and exit 2."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from star_jax.train.metrics import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def env(devices=1, cache=None):
    e = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    e.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             PYTHONPATH=REPO + os.pathsep + e.get("PYTHONPATH", ""))
    if cache:  # the runs of one test compile the same step: compile it once
        e.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
    return e


def command(config_arg, workdir, *extra):
    return [sys.executable, "-m", "star_jax.train", f"--config=experiments/train_smoke.py:{config_arg}",
            f"--workdir={workdir}", "--noprogress", *extra]


def run(config_arg, workdir, e, timeout=600, *extra):
    return subprocess.run(command(config_arg, workdir, *extra), cwd=REPO, env=e, capture_output=True, text=True,
                          timeout=timeout)


def losses(workdir):
    return [(r["step"], r["loss"]) for r in read_metrics(str(workdir))]


def sigterm_after_save(config_arg, workdir, e, save_step, timeout=600):
    """Starts a run that would not end by itself, sends SIGTERM once checkpoint `save_step` is
    complete, and returns (exit code, stdout, stderr)."""
    proc = subprocess.Popen(command(config_arg, workdir), cwd=REPO, env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    done = os.path.join(workdir, "checkpoints", str(save_step))
    deadline = time.time() + timeout
    try:
        while not os.path.isdir(done):
            if proc.poll() is not None or time.time() > deadline:
                out, err = proc.communicate()
                pytest.fail(f"the run ended or hung before checkpoint {save_step}: {proc.returncode}\n{err[-3000:]}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


def check_sigterm_resume(tmp_path, task_arg, save_step, extra_steps):
    e = env(cache=tmp_path / "jax_cache")
    common = f"{task_arg},every={save_step},decay=constant"
    code, out, err = sigterm_after_save(f"{common},steps=100000", tmp_path / "run", e, save_step)
    assert code == 143, err[-3000:]
    assert "preempted by SIGTERM: saved step" in out
    cut = int(out.split("saved step ")[1].split()[0])
    assert cut >= save_step
    assert [s for s, _ in losses(tmp_path / "run")] == list(range(1, cut + 1))

    total = cut + extra_steps
    resumed = run(f"{common},steps={total}", tmp_path / "run", e)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {tmp_path / 'run'}/checkpoints/{cut}" in resumed.stderr
    full = run(f"{common},steps={total}", tmp_path / "full", e)
    assert full.returncode == 0, full.stderr[-3000:]
    a, b = losses(tmp_path / "run"), losses(tmp_path / "full")
    assert [s for s, _ in a] == list(range(1, total + 1))
    assert a == b  # the same floats: data order, random numbers and optimizer state all restored


def test_sigterm_then_resume_is_bit_exact(tmp_path):
    check_sigterm_resume(tmp_path, "task=toy", save_step=5, extra_steps=6)


@pytest.mark.slow
def test_sigterm_then_resume_is_bit_exact_for_the_teacher(tmp_path):
    check_sigterm_resume(tmp_path, "task=teacher", save_step=4, extra_steps=4)


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # ~45 s on the shared 2-core machine (two process starts + compiles)
def test_two_processes_equal_one_process(tmp_path):
    """2 processes x 2 CPU devices (mesh data 2, fsdp 2: each process holds half of every batch)
    against 1 process x 4 devices with the same mesh."""
    arg = "task=toy,steps=8,every=4,mesh=2x2x1"
    one = run(arg, tmp_path / "one", env(devices=4))
    assert one.returncode == 0, one.stderr[-3000:]

    port = free_port()
    procs = [subprocess.Popen(command(arg, tmp_path / "two", f"--coordinator=localhost:{port}", "--num_processes=2",
                                      f"--process_id={i}"), cwd=REPO, env=env(devices=2), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        results = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 9))
    np.testing.assert_allclose([v for _, v in a], [v for _, v in b], rtol=1e-6)
    steps = sorted(int(d) for d in os.listdir(tmp_path / "two" / "checkpoints") if d.isdigit())
    assert steps == [4, 8]
    assert sorted(os.listdir(tmp_path / "two" / "checkpoints" / "8" / "data")) == [
        "commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"]


def test_config_typo_is_one_line_and_exit_2(tmp_path):
    r = subprocess.run(command("task=toy", tmp_path / "x", "--config.optim.lrr=0.1", "--dry_run"), cwd=REPO,
                       env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: --config.optim.lrr")
    r = run("task=toy,mesh=3x1x1", tmp_path / "x", env(), 300, "--dry_run")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == ("error: config.mesh.shape (3, 1, 1) needs 3 devices; this run has 1 "
                                                 "(use -1 on one axis to take the rest)")
    assert not os.path.exists(tmp_path / "x")  # a dry run writes nothing
