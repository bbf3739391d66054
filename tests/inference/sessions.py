"""Shared inputs of the session tests: a random tiny model on a random clip, and a dolly."""

import jax
import numpy as np

from star_jax.inference import random_star_model
from star_jax.io.manifest import planar_prior_geometry


def random_session_inputs(num_frames: int, height: int, width: int):
    """(random tiny StarModel, reference (T, H, W, 3) uint8, planar-prior geometry at depth 2)."""
    model = random_star_model("tiny", jax.random.PRNGKey(0))
    ref = np.random.default_rng(0).integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)
    return model, ref, planar_prior_geometry(num_frames, height, width, depth=2.0)


def dolly_w2c(n: int) -> np.ndarray:
    """(n, 4, 4) float32 world-to-camera: the camera slides right by 0.3 over the n frames."""
    w2c = np.broadcast_to(np.eye(4, dtype=np.float32), (n, 4, 4)).copy()
    w2c[:, 0, 3] = -np.linspace(0, 0.3, n)
    return w2c
