"""Every job's command line with bad inputs, as a new user would type them (subprocesses).

For each row of the table: exit code 2, the expected phrase on stderr in one `error:` line, no
traceback, a failure within seconds (validation runs before any decoding or model building), and
nothing left in the output location. Then --debug, --dry_run, and interrupts (SIGTERM mid-run,
SIGINT after a finished run, an interrupted rerun over an old run).
"""

import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from star_jax.io import files as io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAIL_FAST_S = 20.0  # generous for a loaded 2-core CPU; measured 2-6 s (see the report in the commit)

NAVIGATE = ("-m", "star_jax.navigate", "--config", "experiments/navigate.py:variant=tiny,blocks=1,height=32,width=64")
RENDER = ("-m", "star_jax.render", "--config", "experiments/render.py:variant=tiny,max_frames=9,height=32,width=64")
CONVERT = ("-m", "star_jax.checkpoint.convert", "--variant", "tiny")
EXPORT = ("-m", "star_jax.checkpoint.export")


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """A folder of good and bad inputs; `w[name]` is a path in it."""
    d = tmp_path_factory.mktemp("inputs")
    t = np.arange(12)[:, None, None, None]
    y, x = np.mgrid[:48, :80]
    frames = (x[None, :, :, None] * 3 + y[None, :, :, None] * 2 + t * 9 + np.array([0, 80, 160])) % 256
    io.write_mp4(str(d / "clip.mp4"), frames.astype(np.uint8), 15)
    io.write_mp4(str(d / "tiny.mp4"), np.zeros((5, 2, 2, 3), np.uint8), 15)
    text = {
        "notvideo.mp4": "this is not a video\n", "empty.mp4": "",
        "traj.txt": "0 10\n0 10\n1 1\n", "traj_2lines.txt": "0 10\n0 10\n", "traj_word.txt": "0 ten\n0 10\n1 1\n",
        "keys_unknown.txt": "5 forwrd\n", "keys_malformed.txt": "forward 5\n",
        "manifest_bad.json": "{not json", "K.txt": "50 0 32\n0 50 16\n0 0 1\n",
        "manifest_gap.json": '{"video": "clip.mp4", "depth_dir": "depth", "intrinsics": "K.txt"}',
        "garbage.safetensors": "\0" * 64, "random.pth": "not a checkpoint at all\n" * 5,
        "out_file": "I am a file, not a folder\n", "foreign/notes.txt": "my own notes\n",
        "ckpt_garbage/dit/_METADATA": "garbage", "ckpt_garbage/dit/junk.bin": "junk",
        "text_garbage.npy": "not numpy\n",
    }
    for name, content in text.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(content)
    (d / "ckpt_empty" / "dit").mkdir(parents=True)
    (d / "ckpt_empty" / "vae").mkdir()
    (d / "depth").mkdir()
    for i in (0, 2, 3):  # frame 1's depth is missing: every later map would shift by one frame
        np.save(d / "depth" / f"depth_{i:03d}.npy", np.ones((48, 80), np.float32))
    mirror = np.tile(np.eye(4), (9, 1, 1))
    mirror[:, 0, 0] = -1  # det -1: a mirror, not a camera
    np.savetxt(d / "w2c_mirror.txt", mirror.reshape(9, 16))
    shear = np.tile(np.eye(4), (9, 1, 1))
    shear[:, 0, 1] = 0.5
    np.savetxt(d / "w2c_shear.txt", shear.reshape(9, 16))
    np.save(d / "w2c_short.npy", np.tile(np.eye(4), (5, 1, 1)))
    np.save(d / "text_wrong_dim.npy", np.zeros((5, 7), np.float32))
    from safetensors.numpy import save_file

    save_file({"condition_embedder.time_proj.weight": np.zeros((6, 6), np.float32)},
              str(d / "partial.safetensors"))
    save_file({"foo.weight": np.zeros(1, np.float32)}, str(d / "unknown_naming.safetensors"))
    import datetime

    (d / "object.pth").write_bytes(pickle.dumps({"w": datetime.date(2020, 1, 1)}, protocol=2))
    (d / "list.pth").write_bytes(pickle.dumps([1, 2], protocol=2))
    from star_jax.checkpoint import save_params

    save_params({"a": np.zeros(2, np.float32)}, str(d / "ckpt_wrong" / "dit"))
    (d / "exists").mkdir()
    # model folders: copies of the embedded tiny model, each with one thing wrong
    import json
    import shutil

    from star_jax.assets import TINY_MODEL

    for name, edit in (("model_ok", {}), ("model_13b", {"variant": "1.3B"}),
                       ("model_v0", {"conditioning": "star-jax-v0"}), ("model_novaejson", {})):
        shutil.copytree(TINY_MODEL, d / name)
        card = json.loads((d / name / "star_model.json").read_text())
        (d / name / "star_model.json").write_text(json.dumps({**card, **edit}))
    os.remove(d / "model_novaejson" / "vae" / "vae.json")

    class Paths(dict):
        def __missing__(self, name):
            return str(d / name)

    return Paths()


def run_cli(args, timeout=120, env=None):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})})
    return p, time.perf_counter() - t0


# (id, command, extra arguments with <names> of fixture paths, expected phrase on stderr)
CASES = [
    # the command line and the config
    ("unknown-config-field", NAVIGATE, ["--config.bogus=1"], "has no field 'bogus'"),
    ("config-field-typo", NAVIGATE, ["--config.camera.interpolaton=linear"], "did you mean camera.interpolation"),
    ("missing-config-file", NAVIGATE, ["--config", "experiments/nope.py"], "cannot load the config file"),
    ("bad-config-argument", NAVIGATE, ["--config", "experiments/navigate.py:bogus=1"],
     "unknown config argument 'bogus'"),
    ("unknown-flag", NAVIGATE, ["--bogus"], "Unknown command line flag 'bogus'"),
    ("bad-flag-value", NAVIGATE, ["--config.num_blocks=abc"], "--config.num_blocks=abc"),
    ("unknown-variant", NAVIGATE, ["--config.variant=huge"], "unknown DiT variant 'huge'"),
    ("bad-dtype", NAVIGATE, ["--config.dtype=float99"], "config.dtype"),
    ("zero-blocks", NAVIGATE, ["--config.num_blocks=0"], "config.num_blocks: expected >= 1"),
    ("bad-interpolation", NAVIGATE, ["--config.camera.interpolation=cubic"], "expected one of 'linear', 'smooth'"),
    ("bad-sampler-shift", NAVIGATE, ["--config.sampler.shift=-1"], "config.sampler"),
    # the reference video / manifest
    ("missing-video", NAVIGATE, ["--video", "<missing.mp4>"], "no such video file"),
    ("not-a-video", NAVIGATE, ["--video", "<notvideo.mp4>"], "notvideo.mp4"),
    ("empty-video", NAVIGATE, ["--video", "<empty.mp4>"], "empty"),
    ("2x2-video", NAVIGATE, ["--video", "<tiny.mp4>"], "source frames are 2x2"),
    ("bad-manifest-json", RENDER, ["--config.video=", "--config.manifest=<manifest_bad.json>"], "manifest JSON"),
    ("depth-gap", RENDER, ["--config.video=", "--config.manifest=<manifest_gap.json>"], "frame number 1 is missing"),
    # the camera path
    ("missing-trajectory", NAVIGATE, ["--trajectory", "<missing.txt>"], "cannot read trajectory file"),
    ("trajectory-2-lines", NAVIGATE, ["--trajectory", "<traj_2lines.txt>"], "expected 3 non-empty lines"),
    ("trajectory-word", RENDER, ["--config.trajectory=<traj_word.txt>"], "traj_word.txt:1"),
    ("w2c-mirror", NAVIGATE, ["--w2c", "<w2c_mirror.txt>"], "det R = -1"),
    ("w2c-not-rigid", NAVIGATE, ["--w2c", "<w2c_shear.txt>"], "not a rigid transform"),
    ("w2c-too-few", NAVIGATE, ["--w2c", "<w2c_short.npy>"],
     "expected a camera matrix per output frame (9), found 5"),
    ("keys-unknown", NAVIGATE, ["--keys", "<keys_unknown.txt>"], "unknown keys ['forwrd']"),
    ("keys-malformed", NAVIGATE, ["--keys", "<keys_malformed.txt>"], "keys_malformed.txt:1"),
    # checkpoints and text
    ("checkpoint-missing", NAVIGATE, ["--checkpoint", "<nowhere>"], "no such folder"),
    ("checkpoint-empty", NAVIGATE, ["--checkpoint", "<ckpt_empty>"],
     "ckpt_empty/dit: expected an orbax checkpoint folder, found an empty folder"),
    ("checkpoint-garbage", NAVIGATE, ["--checkpoint", "<ckpt_garbage>"],
     "ckpt_garbage/dit: expected an orbax checkpoint"),
    ("checkpoint-wrong-model", NAVIGATE, ["--checkpoint", "<ckpt_wrong>"],
     "the stored DiT params do not match the model"),
    ("random-and-checkpoint", NAVIGATE, ["--random_weights", "--checkpoint", "<model_ok>"],
     "--random_weights / --checkpoint: expected at most one source of weights"),
    ("model-other-variant", NAVIGATE, ["--checkpoint", "<model_13b>"],
     "model_13b/star_model.json: field 'variant': expected 'tiny' (config.variant), found '1.3B'"),
    ("model-other-conditioning", NAVIGATE, ["--checkpoint", "<model_v0>", "--config.conditioning=inspatio-release"],
     "model_v0/star_model.json: the DiT was trained with conditioning 'star-jax-v0'"),
    ("model-no-vae-json", NAVIGATE, ["--checkpoint", "<model_novaejson>"],
     "model_novaejson/vae/vae.json: expected the trained VAE's config"),
    ("ground-truth-missing", NAVIGATE, ["--ground_truth", "<missing.mp4>"], "config.ground_truth: "),
    ("ground-truth-too-short", NAVIGATE, ["--ground_truth", "<clip.mp4>", "--config.num_blocks=2"],
     "expected at least 21 frames at the reference's 15 fps, found 12"),
    ("text-wrong-dim", NAVIGATE, ["--text", "<text_wrong_dim.npy>"], "text embedding must be"),
    ("text-garbage", NAVIGATE, ["--text", "<text_garbage.npy>"], "cannot read a text embedding"),
    # the output folder
    ("output-is-file", NAVIGATE, ["--output_dir", "<out_file>"], "expected a folder (or nothing), found a file"),
    ("output-under-file", RENDER, ["--config.output_dir=<out_file>/run"], "is a file, not a folder"),
    ("output-unwritable", NAVIGATE, ["--output_dir", "/sys/star_jax_run"], "not writable"),
    ("output-foreign-files", RENDER, ["--config.output_dir=<foreign>"],
     "holds files this job does not write (notes.txt)"),
    # the converter
    ("convert-random-pth", CONVERT, ["--model", "vae", "--src", "<random.pth>"], "expected a torch.save file"),
    ("convert-object-pth", CONVERT, ["--model", "vae", "--src", "<object.pth>"],
     "found a Python object of type datetime.date"),
    ("convert-list-pth", CONVERT, ["--model", "vae", "--src", "<list.pth>"], "cannot read as a torch checkpoint"),
    ("convert-garbage-safetensors", CONVERT, ["--src", "<garbage.safetensors>"], "cannot read as safetensors"),
    ("convert-missing-src", CONVERT, ["--src", "<missing.safetensors>"], "no safetensors weights found"),
    ("convert-missing-keys", CONVERT, ["--src", "<partial.safetensors>"],
     "condition_embedder.time_embedder.linear_1.weight"),
    ("convert-unknown-naming", CONVERT, ["--src", "<unknown_naming.safetensors>"],
     "cannot tell the checkpoint's naming"),
    ("convert-out-exists", CONVERT, ["--src", "<partial.safetensors>", "--out", "<exists>"], "already exists"),
    ("convert-out-unwritable", CONVERT, ["--src", "<partial.safetensors>", "--out", "/sys/star_jax_ckpt"],
     "not writable"),
    ("convert-bad-variant", CONVERT, ["--src", "<partial.safetensors>", "--variant", "huge"],
     "invalid choice: 'huge'"),
    # the student export (a model folder)
    ("export-student-wrong-shapes", EXPORT, ["student", "--dit", "<ckpt_wrong>/dit", "--vae", "<model_ok>/vae"],
     "ckpt_wrong/dit: the student's DiT params do not match the tiny variant"),
    ("export-student-vae-without-json", EXPORT, ["student", "--dit", "<model_ok>/dit", "--vae",
                                                 "<model_novaejson>/vae"], "expected a VAE export's config"),
    ("export-student-no-workdir", EXPORT, ["student", "--workdir", "<nowhere>", "--vae", "<model_ok>/vae"],
     "nowhere: no such folder (expected a student train workdir"),
    ("export-student-two-sources", EXPORT, ["student", "--workdir", "<nowhere>", "--dit", "<model_ok>/dit",
                                            "--vae", "<model_ok>/vae"], "not allowed with argument"),
]


def _command(cmd, extra, w, out):
    args = [re.sub(r"<([^>]+)>", lambda m: w[m.group(1)], a) for a in extra]
    if cmd is NAVIGATE:
        base = ["--video", w["clip.mp4"], "--trajectory", w["traj.txt"], "--output_dir", out]
    elif cmd is RENDER:
        base = [f"--config.video={w['clip.mp4']}", f"--config.trajectory={w['traj.txt']}", f"--config.output_dir={out}"]
    elif cmd is EXPORT:
        return [*cmd, *args, "--out", out]  # the subcommand's own --out
    else:
        base = ["--out", out]
    return [*cmd, *base, *args]  # later flags win


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_fast_and_plainly(case, w, tmp_path):
    name, cmd, extra, phrase = case
    if "/sys/" in " ".join(extra) and not _unwritable("/sys"):
        pytest.skip("/sys is writable here")
    out = str(tmp_path / "out")
    p, seconds = run_cli(_command(cmd, extra, w, out))
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and p.stderr.strip().splitlines()[-1] == errors[0], p.stderr[-2000:]
    assert phrase in errors[0], errors[0]
    assert seconds < FAIL_FAST_S, f"{name}: {seconds:.1f}s"
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)  # nothing written beside or at the output


def _unwritable(folder: str) -> bool:
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(dir=folder))
    except OSError:
        return True
    return False


def test_debug_shows_the_traceback(w, tmp_path):
    args = _command(NAVIGATE, ["--w2c", "<w2c_mirror.txt>"], w, str(tmp_path / "out"))
    for extra, env in (["--debug"], None), ([], {"STAR_JAX_DEBUG": "1"}):
        p, _ = run_cli(args + extra, env=env)
        assert p.returncode == 2 and "Traceback" in p.stderr and "TrajectoryError" in p.stderr
        assert p.stderr.strip().splitlines()[-1].startswith("error: ") and "det R = -1" in p.stderr


def test_dry_run_checks_and_writes_nothing(w, tmp_path):
    out = str(tmp_path / "out")
    for cmd in (NAVIGATE, RENDER):
        p, seconds = run_cli(_command(cmd, ["--dry_run"], w, out))
        assert p.returncode == 0 and "dry run: inputs usable" in p.stdout, p.stderr[-2000:]
        assert seconds < FAIL_FAST_S
    p, _ = run_cli(_command(NAVIGATE, ["--dry_run", "--keys", "<keys_unknown.txt>"], w, out))
    assert p.returncode == 2 and "unknown keys" in p.stderr
    assert os.listdir(tmp_path) == []


# A stand-in job for the interrupt tests: writes a run through the same staged folder and atomic
# writers the jobs use, announcing each phase on stdout.
STUB = textwrap.dedent('''
    import os, sys, threading, time
    from star_jax import cli
    from star_jax.io import files as io

    def job(argv):
        out, mode = argv[1], argv[2]
        with io.staged_folder(out, ("a.json", "video.mp4")) as d:
            io.write_json(os.path.join(d, "a.json"), {"run": "new"})
            if mode == "bug":
                raise RuntimeError("a bug, not a user error")
            if mode == "hang":
                with io.atomic_path(os.path.join(d, "video.mp4")) as tmp:
                    open(tmp, "wb").write(b"partial")
                    print("writing", flush=True)
                    time.sleep(60)
        if mode == "slow_exit":  # a non-daemon thread makes interpreter shutdown wait (as jax's can)
            threading.Thread(target=time.sleep, args=(5,)).start()
        print("done", flush=True)

    cli.main(job)
''')


def _start_stub(tmp_path, out, mode):
    script = tmp_path / "stub.py"
    script.write_text(STUB)
    return subprocess.Popen([sys.executable, str(script), str(out), mode], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for(p, word):
    for line in p.stdout:
        if line.strip() == word:
            return
    raise AssertionError(f"no {word!r}: {p.stderr.read()[-2000:]}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_mid_run_leaves_the_old_run_and_no_temporary_file(tmp_path, signum):
    runs = tmp_path / "runs"
    out = runs / "out"
    out.mkdir(parents=True)
    (out / "a.json").write_text('{"run": "old"}')
    p = _start_stub(tmp_path, out, "hang")
    _wait_for(p, "writing")
    p.send_signal(signum)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signum and "Traceback" not in err
    assert err.strip() == f"error: interrupted by {signal.Signals(signum).name}; no partial output was left (an " \
                          f"output folder only ever holds a complete run)"
    assert os.listdir(runs) == ["out"] and os.listdir(out) == ["a.json"]  # no hidden mp4, no staging folder
    assert (out / "a.json").read_text() == '{"run": "old"}'  # the old run is untouched, not half replaced
    p = _start_stub(tmp_path, out, "quick")
    assert p.wait(timeout=60) == 0
    assert os.listdir(runs) == ["out"] and '"new"' in (out / "a.json").read_text()  # replaced whole on success


def test_a_bug_keeps_its_traceback_and_its_run_leaves_nothing(tmp_path):
    out = tmp_path / "runs" / "out"
    p = _start_stub(tmp_path, out, "bug")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1 and "Traceback" in err and "RuntimeError: a bug, not a user error" in err
    assert not (tmp_path / "runs").exists()


def test_sigint_after_a_finished_run_exits_plainly(tmp_path):
    out = tmp_path / "runs" / "out"
    p = _start_stub(tmp_path, out, "slow_exit")
    _wait_for(p, "done")
    time.sleep(0.5)  # the job has returned; the interpreter is waiting for the thread
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in err, err
    assert err.strip() == "error: interrupted by SIGINT after the job finished"
    assert os.listdir(out) == ["a.json"]


def test_sigterm_during_a_real_render_leaves_nothing(w, tmp_path):
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, *_command(RENDER, [], w, str(out))], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"})
    for line in p.stdout:
        if line.startswith("ingested"):
            break
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143 and "Traceback" not in err, err[-2000:]
    assert os.listdir(tmp_path) == []


def test_staged_folder_swaps_whole_runs_and_cleans_up(tmp_path):
    """In-process: parents made for a failed run are removed, a finished run replaces an old one
    whole, a folder holding other files is refused, and files that appear there during a run keep
    the finished run aside instead of deleting either."""
    from star_jax.errors import InputError

    names = ("a.json", "b.json")
    out = tmp_path / "x" / "y" / "out"
    with pytest.raises(ZeroDivisionError):
        with io.staged_folder(out, names) as d:
            io.write_json(os.path.join(d, "a.json"), {})
            1 / 0
    assert os.listdir(tmp_path) == []  # x/ and x/y/ were made for the run, and are gone again
    for run in ({"a.json": 1, "b.json": 2}, {"a.json": 3}):
        with io.staged_folder(out, names) as d:
            for name, value in run.items():
                io.write_json(os.path.join(d, name), value)
        assert sorted(os.listdir(out)) == sorted(run) and os.listdir(out.parent) == ["out"]
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match=r"holds files this job does not write \(mine.txt\)"):
        with io.staged_folder(out, names):
            pass
    (out / "mine.txt").unlink()
    with pytest.raises(InputError, match="other files appeared there during the run; the finished run is kept in"):
        with io.staged_folder(out, names) as d:
            io.write_json(os.path.join(d, "a.json"), 4)
            (out / "mine.txt").write_text("written meanwhile")
    kept = [f for f in os.listdir(out.parent) if f != "out"]
    assert len(kept) == 1 and os.listdir(out.parent / kept[0] / "out") == ["a.json"]
    assert sorted(os.listdir(out)) == ["a.json", "mine.txt"]
    with pytest.raises(InputError, match="expected a path, found an empty string"):
        io.check_output_folder("", names)
