"""TrivialAugment (`sepconv.data._trivial_augment`): each operation against Pillow, the draws,
and its place in `Batches`. (numpy = TensorFlow: `test_tf_dataset_gives_the_same_batches`.)"""

import math

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from sepconv.data import Batches
from sepconv.data import _trivial_augment as ta
from sepconv.data._batches import crop_flip


def _images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)
    x[:3] = x[:3] // 4 + 60  # a narrow range, for autocontrast and equalize to spread
    rows, cols = np.mgrid[0:32, 0:32]
    x[3:6] = np.clip((rows * 5 + cols * 3)[None, :, :, None] + rng.integers(0, 30, (3, 1, 1, 3)), 0, 255)  # smooth
    x[6] = 77  # one value: every operation that spreads values keeps it
    return x


def _apply(name, images, param=0.0, level=0.0):
    """`apply_numpy` with operation `name` on every image: its parameter, or its level for a geometric one."""
    n, height, width = images.shape[:3]
    affine = [ta._affine(name, level, height, width) if name in ta._GEOMETRIC else (1, 0, 0, 0, 1, 0)] * n
    ops = np.full(n, ta.OPS.index(name))
    return ta.apply_numpy(images, ops, np.full(n, param, np.float32), ta._pixel_maps(np.array(affine, float), height,
                                                                                      width))  # fmt: skip


_BLENDS = (0.0, 5 / 256, 0.5, 1.0, 1.5, 509 / 256)  # the extremes of the wide range: 0.01 and 1.99, in 1/256
_PILLOW = {
    "equalize": (lambda image, _: ImageOps.equalize(image), (0.0,)),
    "solarize": (ImageOps.solarize, (255.0, 127.5, 8.5, 0.0)),
    "posterize": (lambda image, step: ImageOps.posterize(image, 8 - int(math.log2(step))), (1.0, 2.0, 8.0, 64.0)),
    "contrast": (lambda image, f: ImageEnhance.Contrast(image).enhance(f), _BLENDS),
    "color": (lambda image, f: ImageEnhance.Color(image).enhance(f), _BLENDS),
    "brightness": (lambda image, f: ImageEnhance.Brightness(image).enhance(f), _BLENDS),
    "sharpness": (lambda image, f: ImageEnhance.Sharpness(image).enhance(f), _BLENDS),
}


@pytest.mark.parametrize("name, param", [(name, p) for name, (_, params) in _PILLOW.items() for p in params])
def test_colour_operations_match_pillow(name, param):
    x = _images()
    reference = _PILLOW[name][0]
    expected = np.stack([np.asarray(reference(Image.fromarray(image), param)) for image in x])
    np.testing.assert_array_equal(_apply(name, x, param), expected)


def test_auto_contrast_matches_pillow_but_where_pillows_float_quotient_falls_short():
    # Pillow truncates i * (255 / (hi - lo)) - lo * (255 / (hi - lo)) in floats, which can land
    # just below a whole quotient; the integer formula takes the exact one, 1 higher there.
    x = _images()
    got = _apply("auto_contrast", x).astype(int)
    expected = np.stack([np.asarray(ImageOps.autocontrast(Image.fromarray(image))) for image in x]).astype(int)
    low, high = x.min(axis=(1, 2), keepdims=True).astype(int), x.max(axis=(1, 2), keepdims=True).astype(int)
    whole = (x - low) * 255 % np.maximum(high - low, 1) == 0
    assert np.all((got == expected) | ((got == expected + 1) & whole))
    assert np.mean(got == expected) > 0.99
    np.testing.assert_array_equal(got[6], x[6])


@pytest.mark.parametrize("name", ["shear_x", "shear_y", "translate_x", "translate_y"])
def test_shears_and_translations_match_pillows_affine_transform(name):
    x = _images()[:1]
    image = Image.fromarray(x[0])
    for level in np.arange(-30, 31) / 30:
        s, t = 0.99 * level, round(32 * level)
        data = {"shear_x": (1, s, -16 * s, 0, 1, 0), "shear_y": (1, 0, 0, s, 1, -16 * s),
                "translate_x": (1, 0, -t, 0, 1, 0), "translate_y": (1, 0, 0, 0, 1, -t)}[name]  # fmt: skip
        expected = image.transform((32, 32), Image.Transform.AFFINE, data, resample=Image.Resampling.NEAREST)
        np.testing.assert_array_equal(_apply(name, x, level=level)[0], np.asarray(expected), err_msg=str(level))


def test_rotations_match_pillows_rotate_and_turn_counter_clockwise():
    x = _images()[:1]
    image = Image.fromarray(x[0])
    for level in np.arange(-30, 31) / 30:
        expected = np.asarray(image.rotate(135 * level, resample=Image.Resampling.NEAREST))
        # Pillow steps through its affine map incrementally, so where a source point lies on a
        # pixel edge its nearest pixel can differ: at most 22 of 1,024 pixels (at 135 degrees).
        assert np.mean(np.any(_apply("rotate", x, level=level)[0] != expected, axis=-1)) <= 0.025, level
    np.testing.assert_array_equal(_apply("rotate", x, level=90 / 135)[0], np.rot90(x[0]))
    np.testing.assert_array_equal(_apply("rotate", x, level=-90 / 135)[0], np.rot90(x[0], k=-1))


def test_geometric_operations_fill_with_zero_and_identity_keeps_the_image():
    x = _images()
    shifted = _apply("translate_x", x, level=4 / 32)
    np.testing.assert_array_equal(shifted[:, :, 4:], x[:, :, :-4])
    assert not shifted[:, :, :4].any()
    assert not _apply("translate_y", x, level=-1.0).any()  # 32 pixels: nothing left
    np.testing.assert_array_equal(_apply("identity", x), x)


def test_draws_cover_every_operation_over_the_wide_ranges():
    ops, params, maps = ta.draw(7000, 32, 32, np.random.default_rng(0))
    assert np.bincount(ops, minlength=len(ta.OPS)).min() > 400  # 500 expected each
    picked = {name: params[ops == op] for op, name in enumerate(ta.OPS)}
    blends = np.concatenate([picked[name] for name in ("contrast", "color", "brightness", "sharpness")])
    np.testing.assert_array_equal(blends * 256, np.round(blends * 256))
    assert blends.min() == pytest.approx(0.01, abs=1 / 512) and blends.max() == pytest.approx(1.99, abs=1 / 512)
    assert set(picked["posterize"]) == {1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0}
    assert set(np.round(255 - picked["solarize"], 4)) == set(np.round(255 * np.arange(31) / 30, 4))
    geometric = np.isin(ops, [ta.OPS.index(name) for name in ta._GEOMETRIC])
    np.testing.assert_array_equal(maps[~geometric], np.tile(np.arange(1024), ((~geometric).sum(), 1)))
    assert np.mean(np.any(maps[geometric] != np.arange(1024), axis=1)) > 0.9  # level 0 (1 in 31) moves nothing
    again = ta.draw(7000, 32, 32, np.random.default_rng(0))
    for a, b in zip((ops, params, maps), again):
        np.testing.assert_array_equal(a, b)


def test_batches_apply_one_operation_per_image_after_the_crop_and_keep_the_other_draws():
    x = _images()
    y = np.arange(len(x))
    plain = Batches(x, y, batch_size=8, augment=True, seed=1, normalize=False)
    augmented = Batches(x, y, batch_size=8, augment=True, trivial_augment=True, seed=1, normalize=False)
    rows, crops, _, _, operations = augmented._plan(0)
    np.testing.assert_array_equal(plain._plan(0)[1], crops)  # drawn last: the crops stay as they were
    images, labels = augmented[0]
    expected = ta.apply_numpy(crop_flip(x[rows], *crops), *operations)
    np.testing.assert_array_equal(images, np.multiply(expected, np.float32(1 / 255), dtype=np.float32))
    np.testing.assert_array_equal(labels, plain[0][1])
    assert not np.array_equal(images, plain[0][0])
