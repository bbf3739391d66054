"""Data shipped inside the package, so every job has a default input on a fresh install.

`default_world/` is one short held-out procedural world rendered by `python -m data_pipelines.make_default_world`
(made by this project, no third-party content): an InSpatio manifest with a 45-frame 96x160
source video, per-frame 16-bit depth, source cameras and intrinsics, the default camera
trajectory, and the ground-truth target video along that trajectory with its cameras.
`tiny_model/` is the trained tiny STAR model (a model folder, see `star_jax.inference.model`),
written by `python -m star_jax.checkpoint.export student`; the jobs' default weights.
"""

from __future__ import annotations

import os

DEFAULT_WORLD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_world")
TINY_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_model")


def default_world_path(name: str = "manifest.json") -> str:
    """Absolute path of a file of the default world (manifest.json, trajectory.txt, target.mp4, ...)."""
    return os.path.join(DEFAULT_WORLD, name)
