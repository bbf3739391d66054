"""Test set-up: every test sees an 8-device CPU platform (set before JAX is imported), float32
matmuls at full precision for parity tests, and the shared real data when it is present.

On the CPU platform the tests' programs are compiled with LLVM optimisation off (XLA_FLAGS
--xla_backend_optimization_level=0; STAR_JAX_TEST_FAST_COMPILE=0 keeps XLA's default): the same HLO
and XLA passes, only the CPU code generated from them is less optimised (float results can differ
in the last bits). The tiny models' programs compile ~3x faster and run a little slower; compiles
are most of the suite's time.

XLA's persistent compilation cache is on for the test run (compiles dominate the suite's time on a
CPU, and many tests compile the same programs): the xdist workers, and the jobs tests start as
subprocesses, share one cache folder, so a program compiled once is loaded, not recompiled, by every
later test that builds the same HLO. A cached executable is the same binary (same HLO, compiler and
options), so results are bit-identical. Two workers may race on a new entry: a reader that finds it
half-written fails to decompress it, warns and compiles (the cache's file lock, on with a size
limit, rescans the whole folder on every write: too slow here). STAR_JAX_TEST_XLA_CACHE picks the
folder: unset, a fresh temporary folder per run, removed at the end (what CI measures); "0", no
cache; a path, that folder, kept (warm across local runs)."""

import os
import shutil
import tempfile

FAST_COMPILE_ENV = "STAR_JAX_TEST_FAST_COMPILE"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
if (os.environ["JAX_PLATFORMS"] == "cpu" and os.environ.get(FAST_COMPILE_ENV, "1") != "0"
        and "xla_backend_optimization_level" not in _flags):
    _flags += " --xla_backend_optimization_level=0"  # CPU runs only: a GPU run keeps optimised kernels
os.environ["XLA_FLAGS"] = _flags.strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

CACHE_ENV = "STAR_JAX_TEST_XLA_CACHE"
CACHE_MIN_COMPILE_SECS = "0.1"  # smaller programs compile faster than they load

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))


@pytest.fixture(scope="session")
def shared_data():
    """Path to ../shared/data; skips the test cleanly when it is absent."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mesh8():
    """A (data=2, fsdp=2, tensor=2) mesh over the 8 host CPU devices."""
    import numpy as np
    from jax.sharding import Mesh

    devices = jax.devices()
    assert len(devices) >= 8, "conftest must set the 8-device CPU flag before JAX is imported"
    return Mesh(np.asarray(devices[:8]).reshape(2, 2, 2), ("data", "fsdp", "tensor"))


def pytest_configure(config):
    """Points JAX's persistent compilation cache at the run's shared folder (see the module
    docstring). The controller (or a plain run) creates the temporary folder and exports it, so the
    xdist workers it starts next, and their subprocesses, see the same path."""
    folder = os.environ.get(CACHE_ENV, "")
    if folder == "0":
        return
    if not folder:
        folder = tempfile.mkdtemp(prefix="star-jax-xla-cache-")
        config._star_jax_xla_cache = folder  # created here: removed in pytest_unconfigure
        os.environ[CACHE_ENV] = folder
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder  # for the jobs the tests run as subprocesses
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = CACHE_MIN_COMPILE_SECS
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(CACHE_MIN_COMPILE_SECS))


def pytest_terminal_summary(terminalreporter, config):
    folder = os.environ.get(CACHE_ENV, "")
    if folder not in ("", "0") and os.path.isdir(folder) and not hasattr(config, "workerinput"):
        names = [n for n in os.listdir(folder) if n.endswith("-cache")]
        size = sum(os.path.getsize(os.path.join(folder, n)) for n in names)
        terminalreporter.write_line(f"XLA compilation cache {folder}: {len(names)} programs, {size / 2**20:.0f} MiB")


def pytest_unconfigure(config):
    folder = getattr(config, "_star_jax_xla_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
