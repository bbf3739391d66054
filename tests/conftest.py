"""Test set-up: every test sees an 8-device CPU platform (set before JAX is imported), float32
matmuls at full precision for parity tests, and the shared real data when it is present."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

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
