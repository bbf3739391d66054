"""The worlds' two appearances: "flat" (each object its texture's mean colour) is the same world
as "textured" (the default, unchanged) in everything but the surface colours, and it has far less
high-frequency energy."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from data_pipelines.worlds import (
    APPEARANCES,
    PALETTE,
    Quad,
    Scene,
    Sphere,
    Texture,
    WorldSpec,
    mean_albedo,
    render_view,
    sample_world,
)
from data_pipelines.worlds.raycast import shade
from data_pipelines.worlds.textures import albedo

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("kind", ["solid", "checker", "stripes", "tiles", "noise"])
def test_mean_albedo_is_the_average_of_the_texture(kind):
    """Closed form against a Monte Carlo average of `albedo` over 80 pattern periods (and noise cells)."""
    rng = np.random.default_rng(0)
    for c1, c2 in (("red", "white"), ("charcoal", "yellow")):
        tex = Texture(kind, c1, c2, 0.3, 1234)
        uv, p = rng.uniform(0.0, 80 * 0.3, (100_000, 2)), rng.uniform(0.0, 80 * 0.3, (100_000, 3))
        np.testing.assert_allclose(mean_albedo(tex), albedo(tex, uv, p).mean(0), atol=4e-3, err_msg=f"{kind} {c1}")
    if kind == "tiles":  # the grout share is not the 1/2 of the symmetric patterns
        a, b = np.asarray(PALETTE["charcoal"]), np.asarray(PALETTE["yellow"])
        assert np.abs(mean_albedo(tex) - 0.5 * (a + b)).max() > 0.1


def test_flat_surfaces_are_one_colour_times_the_light():
    """A flat-shaded floor is one colour (albedo x Lambert, no shadows); a sphere's pixels are its
    mean albedo times a scalar light level; the textured floor has many colours."""
    H, W, f = 41, 61, 40.0
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]])
    floor_tex, ball_tex = Texture("checker", "teal", "pink", 0.4, 5), Texture("noise", "red", "sand", 0.2, 9)
    floor = Quad((0.0, -1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), 20.0, 20.0, floor_tex, "floor")
    scene = Scene((floor, Sphere((0.0, 0.0, 5.0), 1.0, ball_tex)), sun=(0.0, 1.0, 0.0), ambient=0.3)
    flat = render_view(scene, K, np.eye(4), (H, W), supersample=1, shadows=False, appearance="flat")
    tex = render_view(scene, K, np.eye(4), (H, W), supersample=1, shadows=False)
    np.testing.assert_array_equal(flat.depth, tex.depth)
    np.testing.assert_array_equal(flat.ids, tex.ids)
    on_floor = flat.ids == 0
    assert on_floor.mean() > 0.2
    np.testing.assert_allclose(flat.rgb[on_floor], np.broadcast_to(mean_albedo(floor_tex), (on_floor.sum(), 3)),
                               rtol=1e-6)  # the sun overhead: Lambert 1 on the floor
    assert len(np.unique(tex.rgb[on_floor], axis=0)) > 50
    on_ball = flat.ids == 1
    level = flat.rgb[on_ball] / mean_albedo(ball_tex).astype(np.float32)
    np.testing.assert_allclose(level, np.broadcast_to(level[:, :1], level.shape), rtol=1e-5)
    assert level.min() == pytest.approx(0.3, rel=1e-5) and level.max() > 0.9  # ambient only .. full sun
    with pytest.raises(ValueError, match="appearance"):
        shade(scene, np.zeros(3), np.array([[0.0, 0.0, 1.0]]), np.array([5.0]), np.array([1]), 0.0,
              appearance="matte")
    with pytest.raises(ValueError, match="appearance"):
        WorldSpec(appearance="matte")


def _interior(ids: np.ndarray) -> np.ndarray:
    """(T, H-2, W-2) bool: pixels whose 4 neighbours see the same object (no silhouette edge)."""
    c = ids[:, 1:-1, 1:-1]
    inner = c >= 0
    for a, b in ((slice(None, -2), slice(1, -1)), (slice(2, None), slice(1, -1)),
                 (slice(1, -1), slice(None, -2)), (slice(1, -1), slice(2, None))):
        inner &= ids[:, a, b] == c
    return inner


def _laplacian(rgb: np.ndarray) -> np.ndarray:
    """(T, H-2, W-2): the largest |4-neighbour Laplacian| over the channels, in [0, 1] units."""
    y = rgb.astype(np.float64) / 255.0
    lap = 4 * y[:, 1:-1, 1:-1] - y[:, :-2, 1:-1] - y[:, 2:, 1:-1] - y[:, 1:-1, :-2] - y[:, 1:-1, 2:]
    return np.abs(lap).max(-1)


@pytest.mark.parametrize("seed", [0, 1, 4])
def test_flat_twin_is_the_same_world_with_far_less_detail(seed):
    """Same scene, caption, cameras, K, depths, ids and sky; different colours. High-frequency
    criterion, over object interiors (no silhouette inside the 4-neighbourhood): the mean
    |Laplacian| of flat is under 1/4 of textured's, and under 20 % of flat's interior pixels (but
    over half of textured's) have a |Laplacian| above 2.5/255 (what is left in flat: shadow edges
    and the light's gradient on spheres)."""
    spec = WorldSpec(height=48, width=80, num_frames=1)
    tex, flat = (sample_world(seed, WorldSpec(**{**spec.__dict__, "appearance": a})) for a in APPEARANCES)
    assert flat.scene == tex.scene and flat.caption == tex.caption
    for name in ("K", "times", "source_depth", "source_ids", "source_w2c", "target_depth", "target_ids",
                 "target_w2c"):
        np.testing.assert_array_equal(getattr(flat, name), getattr(tex, name), err_msg=name)
    for view in ("source", "target"):
        ids, a, b = getattr(tex, f"{view}_ids"), getattr(tex, f"{view}_rgb"), getattr(flat, f"{view}_rgb")
        sky = _interior(np.where(ids < 0, 0, -1))  # pixels with only sky around them
        np.testing.assert_array_equal(a[:, 1:-1, 1:-1][sky], b[:, 1:-1, 1:-1][sky])
        assert np.abs(a.astype(np.int16) - b).mean() > 5.0
        inner = _interior(ids)
        assert inner.mean() > 0.5
        la, lb = _laplacian(a)[inner], _laplacian(b)[inner]
        assert lb.mean() < 0.25 * la.mean(), (view, lb.mean(), la.mean())
        assert (lb > 2.5 / 255).mean() < 0.2 < 0.5 < (la > 2.5 / 255).mean(), (view, lb.mean(), la.mean())


def test_default_is_textured_and_unchanged():
    """The default appearance renders what the code rendered before "flat" existed: uint8 frames of
    seed 3 at 32x48x5, hashed with the generator of commit 51520a9. Rendered in a subprocess under
    XLA's default CPU code generation: the suite compiles with LLVM optimisation off (conftest),
    which moves the last float bits and so the hash."""
    spec = WorldSpec(height=32, width=48, num_frames=5)
    assert spec.appearance == "textured"
    script = textwrap.dedent("""
        import hashlib, json
        import numpy as np
        from data_pipelines.worlds import WorldSpec, sample_world
        ex = sample_world(3, WorldSpec(height=32, width=48, num_frames=5))
        print(json.dumps({k: hashlib.sha256(np.ascontiguousarray(getattr(ex, k)).tobytes()).hexdigest()
                          for k in ("source_rgb", "target_rgb")}))
    """)
    flags = re.sub(r"--xla_backend_optimization_level=\S*", "", os.environ.get("XLA_FLAGS", "")).strip()
    p = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "XLA_FLAGS": flags})
    assert p.returncode == 0, p.stderr[-2000:]
    digest = json.loads(p.stdout.strip().splitlines()[-1])
    assert digest == {"source_rgb": "f6ecd2b5339aa460c3d293c264b381f1c8d476fe0e1e179c803b36643072d39c",
                      "target_rgb": "da6e3bb6be346384263031b6be9b596b8b13b09c72e18194e830b720378e8eb6"}
