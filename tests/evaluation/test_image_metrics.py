"""PSNR and SSIM against closed forms and scikit-image (an independent implementation), over all
pixels and in a region."""

import numpy as np
import pytest

from star_jax.errors import InputError
from star_jax.evaluation import psnr, ssim, ssim_map

skimage_metrics = pytest.importorskip("skimage.metrics")


def images(shape=(2, 24, 30, 3), seed=0):
    rng = np.random.default_rng(seed)
    a = rng.uniform(size=shape)
    b = np.clip(a + 0.1 * rng.standard_normal(shape), 0, 1)
    return a, b


def test_psnr_closed_forms():
    a = np.full((4, 5, 3), 0.5)
    assert psnr(a, a) == np.inf
    assert psnr(a, a + 0.1) == pytest.approx(20.0)  # MSE 0.01
    # region: only the pixels in it count (errors elsewhere are ignored)
    b = a.copy()
    b[:2] += 0.1
    b[2:] += 0.3
    region = np.zeros((4, 5), bool)
    region[:2] = True
    assert psnr(b, a, region) == pytest.approx(20.0)
    assert psnr(b, a, ~region) == pytest.approx(-10 * np.log10(0.09))
    assert np.isnan(psnr(b, a, np.zeros((4, 5), bool)))
    # uint8 is [0, 255]
    assert psnr(np.full((4, 5, 3), 255, np.uint8), np.zeros((4, 5, 3), np.uint8)) == pytest.approx(0.0)


def test_psnr_equals_scikit_image():
    a, b = images()
    assert psnr(b, a) == pytest.approx(skimage_metrics.peak_signal_noise_ratio(a, b, data_range=1.0), rel=1e-12)


def skimage_ssim_map(a, b):
    """scikit-image's SSIM map of one image with Wang et al.'s settings (window 11, sigma 1.5,
    population covariance), its 5-pixel border cropped as its mean does."""
    mean, full = skimage_metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                                       use_sample_covariance=False, data_range=1.0,
                                                       channel_axis=-1, full=True)
    return mean, full.mean(axis=-1)[5:-5, 5:-5]


def test_ssim_equals_scikit_image_over_all_pixels_and_in_a_region():
    a, b = images((24, 30, 3))
    mean, ref_map = skimage_ssim_map(a, b)
    assert ssim(b, a) == pytest.approx(mean, rel=1e-10)
    np.testing.assert_allclose(ssim_map(b, a), ref_map, rtol=1e-10, atol=1e-12)
    region = np.zeros((24, 30), bool)
    region[3:15, 8:27] = True  # partly in the 5-pixel border, whose centres have no map value
    assert ssim(b, a, region) == pytest.approx(ref_map[region[5:-5, 5:-5]].mean(), rel=1e-10)
    assert ssim(b, a, region) != pytest.approx(ssim(b, a, ~region), rel=1e-3)


def test_ssim_of_a_clip_pools_its_frames():
    a, b = images((3, 24, 30, 3))
    maps = [skimage_ssim_map(a[i], b[i])[1] for i in range(3)]
    region = np.random.default_rng(1).uniform(size=(3, 24, 30)) > 0.5
    want = np.concatenate([m[r[5:-5, 5:-5]] for m, r in zip(maps, region)]).mean()
    assert ssim(b, a, region) == pytest.approx(want, rel=1e-10)


def test_ssim_closed_forms():
    a, _ = images((20, 20, 3))
    assert ssim(a, a) == pytest.approx(1.0)
    # constant images c, d: only the luminance term is left, (2 c d + C1) / (c^2 + d^2 + C1)
    c, d, c1 = 0.3, 0.6, 0.01 ** 2
    got = ssim(np.full((20, 20, 1), c), np.full((20, 20, 1), d))
    assert got == pytest.approx((2 * c * d + c1) / (c * c + d * d + c1), rel=1e-12)
    # a region that only touches the border has no map pixel
    border = np.zeros((20, 20), bool)
    border[:5] = True
    assert np.isnan(ssim(a, a, border))


@pytest.mark.parametrize("args, match", [
    ((np.zeros((8, 8, 3)), np.zeros((8, 9, 3))), r"one shape"),
    ((np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), np.ones((8, 9))), r"region must be \(\.\.\., H, W\) = \(8, 8\)"),
    ((np.zeros((8, 8, 3), np.int32), np.zeros((8, 8, 3), np.int32)), r"pred: expected uint8 or float"),
])
def test_bad_inputs_are_input_errors(args, match):
    with pytest.raises(InputError, match=match):
        psnr(*args)


def test_ssim_needs_a_whole_window():
    with pytest.raises(InputError, match=r"at least 11 pixels"):
        ssim(np.zeros((8, 30, 3)), np.zeros((8, 30, 3)))
