"""Mask latents under the release's convention: hand-made masks against values worked out from
the release's behaviour, and random masks against torch's bilinear resize (the release's own op),
streaming equals whole-video packing, the old convention stays named and distinct."""

import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.errors import InputError
from star_jax.inference.conditions import CONVENTIONS, get_conditioning, mask_to_latent


def _cells(lat, t=0, c=0):
    return np.asarray(lat)[0, t, :, :, c]


def test_release_mask_values_on_hand_made_masks():
    """One 16 x 24 frame = 2 x 3 latent cells: all rendered -> +1, all holes -> -1, half covered
    (the centre 2 x 2 half rendered) -> 0, only the centre 2 x 2 rendered -> +1, a rendered ring
    around a hole centre -> -1, one centre pixel rendered -> -0.5."""
    m = np.zeros((16, 24), bool)
    m[0:8, 0:8] = True  # cell (0, 0): all rendered
    # cell (0, 1): all holes
    m[0:8, 16:20] = True  # cell (0, 2): left half rendered (centre columns 19 | 20 split)
    m[11:13, 3:5] = True  # cell (1, 0): the centre 2 x 2 only
    m[8:16, 8:16] = True
    m[11:13, 11:13] = False  # cell (1, 1): everything but the centre
    m[11, 20] = True  # cell (1, 2): one of the centre pixels (row 11, column 20)
    lat = mask_to_latent(jnp.asarray(np.broadcast_to(m, (1, 1, 16, 24))))
    assert lat.shape == (1, 1, 2, 3, 4) and lat.dtype == jnp.float32
    want = np.array([[1.0, -1.0, 0.0], [1.0, -1.0, -0.5]])
    for c in range(4):  # frame 0 fills all 4 channels of latent frame 0
        np.testing.assert_array_equal(_cells(lat, c=c), want)
    # the old convention reads the same masks as covered fractions
    old = mask_to_latent(jnp.asarray(np.broadcast_to(m, (1, 1, 16, 24))), convention="star-jax-v0")
    np.testing.assert_allclose(_cells(old), [[1.0, 0.0, 0.5], [4 / 64, 60 / 64, 1 / 64]])


def _release_twin(masks):
    """The release's convert_mask_video on a {-1, +1} mask, with torch: bilinear resize to
    (H/8, W/8), align_corners=False (no antialias), first frame 4x, groups of 4 -> (B, n, h, w, 4)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    b, t, h, w = masks.shape
    x = torch.from_numpy(masks.astype(np.float32) * 2.0 - 1.0).reshape(b * t, 1, h, w)
    x = F.interpolate(x, size=(h // 8, w // 8), mode="bilinear", align_corners=False, antialias=False)
    x = x.reshape(b, t, 1, h // 8, w // 8)
    x = torch.cat([torch.repeat_interleave(x[:, :1], 4, dim=1), x[:, 1:]], dim=1)
    x = x.reshape(b, x.shape[1] // 4, 4, h // 8, w // 8)
    return x.permute(0, 1, 3, 4, 2).numpy()


def test_release_mask_matches_torch_bilinear_and_streams():
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(2, 9, 32, 48)) < 0.6
    masks[:, :, 8:24] |= rng.uniform(size=(2, 9, 16, 48)) < 0.5  # some fuller cells
    got = np.asarray(mask_to_latent(jnp.asarray(masks)))
    want = _release_twin(masks)
    assert got.shape == want.shape == (2, 3, 4, 6, 4)
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(got)) <= {-1.0, -0.5, 0.0, 0.5, 1.0} and len(np.unique(got)) == 5
    # a stream: the first 5 frames, then 4 at a time, equal the whole video at once
    parts = [mask_to_latent(jnp.asarray(masks[:, :5]))] + [
        mask_to_latent(jnp.asarray(masks[:, 5:9]), first=False)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), got)


def test_conventions_are_named():
    assert set(CONVENTIONS) == {"inspatio-release", "inspatio-1.5", "star-jax-v0", "star-jax-v1"}
    rel = get_conditioning("inspatio-release")
    assert rel.warp_recipe().mode == "inspatio-release" and rel.warp_recipe(2).footprint == 5
    meta = rel.metadata(2)
    assert meta["convention"] == "inspatio-release" and meta["mask"] == {"hole": -1.0, "valid": 1.0, "window": 2}
    assert meta["warp"]["supersample"] == 2
    assert get_conditioning(rel) is rel
    for name in ("inspatio-1.5", "star-jax-v1"):  # each names its own render, with the release's mask encoding
        c = get_conditioning(name)
        assert c.warp_recipe(2).mode == name and c.metadata(2)["mask"] == meta["mask"]
    with pytest.raises(InputError, match="conditioning convention 'fraction': expected one of inspatio-release, "
                                         "inspatio-1.5, star-jax-v0, star-jax-v1"):
        get_conditioning("fraction")
