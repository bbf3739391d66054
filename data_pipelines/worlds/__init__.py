"""Procedural 4D worlds with ground truth: scenes, an exact ray caster, camera paths, examples.

    scene.py    frozen dataclasses: textures, motions, rectangles / boxes / spheres, the scene;
                `random_scene(seed)`, `describe(scene)` (captions from a fixed vocabulary)
    textures.py band-limited procedural albedo (checker, stripes, tiles, value noise); the
                "flat" appearance's per-object mean colour
    raycast.py  analytic ray casting in float64 NumPy: RGB, z-depth, object ids, hard shadows
    paths.py    camera paths as InSpatio keyframes (orbit, dolly, pan) via `star_jax.geometry`
    sample.py   `sample_world(seed)`: source and target videos of one dynamic scene, with depth,
                w2c, K and caption

World axes: y up, floor at y = 0. Cameras: `star_jax.geometry` conventions (OpenCV axes, w2c).
"""

from data_pipelines.worlds.paths import CameraPath, keyframes, look_at, path_w2c, trajectory_text, trajectory_w2c
from data_pipelines.worlds.raycast import View, render_depth, render_video, render_view
from data_pipelines.worlds.sample import (
    WorldSample,
    WorldSpec,
    quantize_depth,
    render_pair,
    sample_world,
    source_cameras,
    target_cameras,
)
from data_pipelines.worlds.scene import PALETTE, Box, Motion, Quad, Scene, Sphere, Texture, courtyard, describe, random_scene
from data_pipelines.worlds.textures import APPEARANCES, mean_albedo

__all__ = ["APPEARANCES", "Box", "CameraPath", "Motion", "PALETTE", "Quad", "Scene", "Sphere", "Texture", "View",
           "WorldSample", "WorldSpec", "courtyard", "describe", "keyframes", "look_at", "mean_albedo", "path_w2c",
           "quantize_depth", "random_scene", "render_depth", "render_pair", "render_video", "render_view", "sample_world",
           "source_cameras", "target_cameras", "trajectory_text", "trajectory_w2c"]
