"""Four-image worlds: latent groups, the release's view assignment (top three by coverage, the
permutation with most coverage), the fused render of four views of a synthetic room, and a
session on a four-view scene recording its per-block choice."""

import math

import jax
import numpy as np
import pytest

from star_jax.geometry import warp_recipe
from star_jax.inference.multiview import assign_views, group_coverage, latent_groups, render_views

H, W = 32, 48
COLOURS = np.array([[250, 0, 0], [0, 250, 0], [0, 0, 250], [250, 250, 0]], np.uint8)


def _yaw_w2c(deg: float) -> np.ndarray:
    """A camera at the origin turned `deg` degrees to the right (R_y), as world-to-camera."""
    a = math.radians(deg)
    c2w = np.eye(4)
    c2w[:3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
    return np.linalg.inv(c2w).astype(np.float32)


def _room():
    """Four views from the centre of a square room, turned 0, 90, 180, 270 degrees, each seeing
    its own wall (depth 2) in one flat colour; 60 degree field of view, so no two views overlap."""
    f = W / (2 * math.tan(math.radians(30)))
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]], np.float32)
    views = np.broadcast_to(COLOURS[:, None, None], (4, H, W, 3)).copy()
    depth = np.full((4, H, W), 2.0, np.float32)
    return views, depth, np.stack([K] * 4), np.stack([_yaw_w2c(90 * v) for v in range(4)])


def test_latent_groups():
    assert latent_groups(9, True) == [slice(0, 1), slice(1, 5), slice(5, 9)]
    assert latent_groups(12, False) == [slice(0, 4), slice(4, 8), slice(8, 12)]
    for n, first in ((8, True), (10, False)):
        with pytest.raises(ValueError, match="not whole latents"):
            latent_groups(n, first)
    counts = np.arange(4 * 9).reshape(4, 9)
    np.testing.assert_array_equal(group_coverage(counts, latent_groups(9, True)),
                                  [[0, 9, 18, 27], [10, 46, 82, 118], [26, 62, 98, 134]])


@pytest.mark.parametrize("overlap, views, kept", [
    # one latent sees view 2, the next two view 0: each latent gets the view it sees
    ([[0, 0, 10, 0], [0, 0, 40, 0], [40, 0, 0, 0]], (1, 2, 0), (2, 0, 1)),
    # every latent sees views 3 > 1 > 0 > 2 equally: the smallest permutation of the top three wins ties
    ([[5, 7, 1, 9]] * 3, (0, 1, 3), (3, 1, 0)),
    # the best view overall is not the best for every latent: the permutation maximises the sum
    ([[9, 8, 0, 0], [9, 0, 0, 1], [9, 0, 7, 0]], (1, 0, 2), (0, 1, 2)),
    # views 0 and 3 tie on totals (both kept, the lower first), view 1 is dropped; ties between
    # equally good permutations go to the smaller one
    ([[4, 0, 0, 4], [0, 1, 0, 0], [0, 0, 2, 0]], (0, 3, 2), (0, 3, 2)),
])
def test_assign_views_table(overlap, views, kept):
    assert assign_views(np.array(overlap)) == (views, kept)


def test_assign_views_is_the_best_permutation():
    """Against brute force over every injective assignment of 4 views to 3 latents."""
    import itertools

    rng = np.random.default_rng(0)
    for _ in range(50):
        overlap = rng.integers(0, 5, (3, 4))
        views, kept = assign_views(overlap)
        best = max(sum(overlap[i, v] for i, v in enumerate(p)) for p in itertools.permutations(range(4), 3))
        got = sum(overlap[i, v] for i, v in enumerate(views))
        totals = overlap.sum(0)
        assert sorted(totals[list(kept)], reverse=True) == sorted(totals, reverse=True)[:3]
        # the chosen permutation is the best among the kept views, which can miss the global best
        assert got == max(sum(overlap[i, v] for i, v in enumerate(p)) for p in itertools.permutations(kept))
        assert got <= best
    with pytest.raises(ValueError, match="at least 3 views"):
        assign_views(np.zeros((3, 2)))


@pytest.mark.parametrize("mode", ["inspatio-1.5", "inspatio-release"])
def test_fused_render_of_the_room_follows_the_path(mode):
    """A target path that looks at view 2's wall for frames 0-4 and view 0's for 5-8: the fused
    render shows those walls' colours, the counts say which view covers what, and the first block's
    latents are assigned (1, 2, 0): view 2 for the latent of frames 1-4, view 0 for frames 5-8."""
    views, depth, K, w2c = _room()
    target = np.stack([_yaw_w2c(180.0)] * 5 + [_yaw_w2c(0.0)] * 4)
    fused, counts = render_views(views / 255.0, depth, K, w2c, K[0], target, warp_recipe(mode, 2))
    rgb, mask = np.asarray(fused.rgb), np.asarray(fused.mask)
    assert mask.mean() > 0.95
    for t, v in [(0, 2), (4, 2), (5, 0), (8, 0)]:
        inside = rgb[t][mask[t]]
        np.testing.assert_allclose(np.median(inside, axis=0), COLOURS[v] / 255.0, atol=1e-3)
    assert counts.shape == (4, 9)
    assert (counts[2, :5] > 0.95 * H * W).all() and (counts[0, 5:] > 0.95 * H * W).all()
    assert counts[[0, 1, 3], :5].sum() == 0 and counts[1:, 5:].sum() == 0
    overlap = group_coverage(counts, latent_groups(9, True))
    assert assign_views(overlap) == ((1, 2, 0), (2, 0, 1))


def test_fused_render_z_test_and_ties():
    """Two views of one wall at different depths: the nearer wins where both land; two equal
    depths: the lower view index wins."""
    views, depth, K, w2c = _room()
    w2c = np.stack([w2c[0]] * 4)  # all four look the same way
    depth = np.stack([np.full((H, W), d, np.float32) for d in (3.0, 2.0, 2.0, 4.0)])
    fused, counts = render_views(views / 255.0, depth, K, w2c, K[0], w2c[:1], warp_recipe("inspatio-1.5", 2))
    rgb, mask = np.asarray(fused.rgb)[0], np.asarray(fused.mask)[0]
    np.testing.assert_allclose(rgb[mask].mean(0), COLOURS[1] / 255.0, atol=1e-4)  # view 1, not its tie view 2
    np.testing.assert_allclose(np.asarray(fused.depth)[0][mask], 2.0, atol=1e-4)
    assert (counts[:, 0] == H * W).all()


@pytest.fixture(scope="module")
def model():
    from star_jax.inference import random_star_model

    return random_star_model("tiny", jax.random.PRNGKey(0), conditioning="inspatio-1.5")


@pytest.mark.slow  # compiles the tiny model's first and second blocks: minutes on a busy 2-core CPU
def test_session_on_four_views_records_its_choice(model):
    """A NavigationSession with fuse=True on the room: the block's reference frames are the
    chosen views' images latent by latent, and BlockOutput.views says what was chosen."""
    from star_jax.inference import NavigationSession
    from star_jax.io.manifest import SceneGeometry

    views, depth, K, w2c = _room()
    session = NavigationSession(model, views, SceneGeometry(depth, K, w2c, "measured"), fuse=True)
    target = np.stack([_yaw_w2c(180.0)] * 5 + [_yaw_w2c(0.0)] * 4)
    out = session.step(target_w2c=target)
    assert out.views["latent_views"] == [1, 2, 0] and out.views["kept_views"] == [2, 0, 1]
    np.testing.assert_array_equal(out.source_indices, [1, 2, 2, 2, 2, 0, 0, 0, 0])
    np.testing.assert_array_equal(out.reference, views[out.source_indices])
    assert out.views["overlap_pixels"][1][2] > 0.95 * 4 * H * W and out.views["overlap_pixels"][0][1] == 0
    np.testing.assert_array_equal(out.target_K, np.broadcast_to(K[0], (9, 3, 3)))
    assert out.masks.mean() > 0.95 and out.frames.shape == (9, H, W, 3)
    # the next block: 12 frames, all looking at view 3's wall
    out = session.step(target_w2c=np.stack([_yaw_w2c(270.0)] * 12))
    assert out.views["kept_views"][0] == 3 and 3 in out.views["latent_views"]
    with pytest.raises(ValueError, match="at least as many views"):
        NavigationSession(model, views[:2], SceneGeometry(depth[:2], K[:2], w2c[:2], "measured"), fuse=True)


def test_assign_clip_blocks_of_three_latents():
    """The whole-clip assignment (the render job): blocks of 3 latents over frame 0 and groups of
    4, a short last block; each block equals assign_views on its own latents."""
    from star_jax.inference.multiview import assign_clip

    rng = np.random.default_rng(1)
    counts = rng.integers(0, 100, (4, 25))  # latents: 0 | 1-4 5-8 | 9-12 13-16 17-20 | 21-24 -> blocks 3, 3, 1
    src, records = assign_clip(counts)
    assert len(records) == 3 and len(records[-1]["latent_views"]) == 1
    first = group_coverage(counts, latent_groups(9, True))
    assert records[0]["latent_views"] == list(assign_views(first)[0])
    second = group_coverage(counts[:, 9:21], latent_groups(12, False))
    assert records[1]["latent_views"] == list(assign_views(second)[0])
    want = np.repeat([*records[0]["latent_views"], *records[1]["latent_views"], *records[2]["latent_views"]],
                     [1, 4, 4, 4, 4, 4, 4])
    np.testing.assert_array_equal(src, want)


@pytest.mark.slow  # the random tiny model's init: ~0.5-2 min on a busy 2-core CPU
def test_from_scene_fuses_a_four_view_folder(model, tmp_path):
    """NavigationSession.from_scene on a four-view scene folder: the views as the reference, fused."""
    from star_jax.inference import NavigationSession
    from star_jax.io.scene_folder import Scene, write_scene

    views, depth, K, w2c = _room()
    write_scene(tmp_path / "room", Scene(kind="image", views=views, depth=depth, source_K=K, source_w2c=w2c,
                                         target_w2c=np.stack([_yaw_w2c(0.0)] * 9), fps=15.0, output_id="room",
                                         valid_frames=9, geometry="user-depth"))
    session = NavigationSession.from_scene(model, tmp_path / "room")
    assert session.fuse and session.reference.shape == (4, H, W, 3)
    np.testing.assert_array_equal(session.reference, views)
    np.testing.assert_allclose(session.geometry.w2c, w2c, atol=1e-6)
