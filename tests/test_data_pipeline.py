"""make_splits (stratified subsets, validation modes) and Batches (order, augmentation,
normalization, layouts), checked against plain numpy references."""

import re

import keras
import numpy as np
import pytest

from sepconv.data import CIFAR10_MEAN, CIFAR10_STD, Batches, Cifar10, make_splits
from sepconv.data._batches import crop_flip, cut_out


def _tagged_images(n, seed=0):
    """Random images whose pixel (0, 0) encodes their index, so selections can be traced."""
    x = np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
    return x


def _ids(x):
    return x[:, 0, 0, 0].astype(int) * 256 + x[:, 0, 0, 1]


def _dataset(class_sizes, test_per_class=4):
    y_train = np.repeat(np.arange(len(class_sizes)), class_sizes).astype(np.int64)
    y_train = y_train[np.random.default_rng(1).permutation(len(y_train))]  # interleave classes
    y_test = np.repeat(np.arange(len(class_sizes)), test_per_class).astype(np.int64)
    names = tuple(f"class{c}" for c in range(len(class_sizes)))
    return Cifar10(_tagged_images(len(y_train)), y_train, _tagged_images(len(y_test), 1), y_test, names, "synthetic")


# --- make_splits ---------------------------------------------------------------------


def test_all_training_data_and_test_validation_by_default():
    data = _dataset([20] * 10)
    splits = make_splits(data)
    np.testing.assert_array_equal(splits.x_train, data.x_train)
    np.testing.assert_array_equal(splits.y_train, data.y_train)
    assert splits.x_val is data.x_test and splits.y_val is data.y_test
    assert splits.x_test is data.x_test and splits.y_test is data.y_test
    assert splits.validation == "the test set (as in the Keras tutorial; not held out)"


@pytest.mark.parametrize(
    "sizes, train_size, expected",
    [
        ([100] * 10, 95, [10] * 5 + [9] * 5),  # remainder to the lowest labels
        ([100, 100, 5], 60, [28, 27, 5]),  # 20 each; class 2 has 5, its 15 spread over 0 and 1
        ([3, 50, 50], 103, [3, 50, 50]),  # everything
    ],
)
def test_train_subset_is_stratified(sizes, train_size, expected):
    splits = make_splits(_dataset(sizes), train_size=train_size)
    np.testing.assert_array_equal(np.bincount(splits.y_train, minlength=len(sizes)), expected)


def test_selected_images_carry_their_labels_and_are_distinct():
    data = _dataset([30] * 10)
    splits = make_splits(data, train_size=100, validation=50, seed=3)
    train_ids, val_ids = _ids(splits.x_train), _ids(splits.x_val)
    np.testing.assert_array_equal(splits.y_train, data.y_train[train_ids])
    np.testing.assert_array_equal(splits.y_val, data.y_train[val_ids])
    assert len(set(train_ids)) == 100 and len(set(val_ids)) == 50
    assert not set(train_ids) & set(val_ids)
    assert list(train_ids) == sorted(train_ids)  # the dataset's order is kept


def test_selection_is_fixed_by_the_seed():
    data = _dataset([30] * 10)
    first = make_splits(data, train_size=50, validation=0.2, seed=5)
    again = make_splits(data, train_size=50, validation=0.2, seed=5)
    other = make_splits(data, train_size=50, validation=0.2, seed=6)
    np.testing.assert_array_equal(_ids(first.x_train), _ids(again.x_train))
    np.testing.assert_array_equal(_ids(first.x_val), _ids(again.x_val))
    assert set(_ids(first.x_train)) != set(_ids(other.x_train))
    assert set(_ids(first.x_val)) != set(_ids(other.x_val))


def test_smaller_subsets_nest_and_validation_ignores_train_size():
    data = _dataset([30] * 10)
    small = make_splits(data, train_size=40, validation=0.1)
    large = make_splits(data, train_size=200, validation=0.1)
    full = make_splits(data, validation=0.1)
    assert set(_ids(small.x_train)) < set(_ids(large.x_train)) < set(_ids(full.x_train))
    np.testing.assert_array_equal(_ids(small.x_val), _ids(full.x_val))
    assert len(full.y_train) == 270


@pytest.mark.parametrize("validation, per_class", [(0.2, 6), (50, 5), (1, None)])
def test_hold_out_validation_is_stratified(validation, per_class):
    data = _dataset([30] * 10)
    splits = make_splits(data, validation=validation)
    counts = np.bincount(splits.y_val, minlength=10)
    if per_class is None:
        np.testing.assert_array_equal(counts, [1] + [0] * 9)
    else:
        np.testing.assert_array_equal(counts, [per_class] * 10)
    assert len(splits.y_train) + len(splits.y_val) == 300
    assert splits.x_test is data.x_test
    assert splits.validation == f"stratified hold-out from the training set ({validation!r}, seed 0)"


def test_describe_names_every_split():
    splits = make_splits(_dataset([30] * 9 + [27]), train_size=95, validation=0.1)
    assert splits.describe() == (
        "train:          95 images, 9-10 per class; seed 0\n"
        "validation:     30 images, 3 per class; stratified hold-out from the training set (0.1, seed 0)\n"
        "test:           40 images, 4 per class; the dataset's test set\n"
        "source:     synthetic"
    )


_VALIDATION = "validation must be 'test', a fraction in (0, 1) or a count. Received: validation="
_FRACTION = "validation fraction must be in (0, 1) and hold out at least one image. Received: validation="


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"validation": "val"}, _VALIDATION + "'val'"),
        ({"validation": None}, _VALIDATION + "None"),
        ({"validation": True}, _VALIDATION + "True"),
        ({"validation": 1.5}, _FRACTION + "1.5"),
        ({"validation": 0.0001}, _FRACTION + "0.0001"),
        ({"validation": 300}, "validation count must be in [1, 300) (the training set size). Received: validation=300"),
        ({"train_size": 0}, "train_size must be positive. Received: train_size=0"),
        ({"train_size": 10.0}, "train_size must be an integer. Received: train_size=10.0"),
        (
            {"train_size": 271, "validation": 0.1},
            "train_size must be at most 270 (training images not held out for validation). Received: train_size=271",
        ),
        ({"seed": -1}, "seed must be non-negative. Received: seed=-1"),
    ],
)
def test_make_splits_errors(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=f"^{re.escape(message)}$"):
        make_splits(_dataset([30] * 10), **kwargs)


def test_make_splits_needs_a_dataset():
    with pytest.raises(TypeError, match=r"^data must be a Cifar10 from load_cifar10\(\)\. Received: data=dict$"):
        make_splits({})


# --- Batches -------------------------------------------------------------------------


def _reference_normalize(x):
    """(x / 255 - mean) / std in float64."""
    return (x / 255.0 - np.array(CIFAR10_MEAN)) / np.array(CIFAR10_STD)


def test_batch_shapes_dtypes_and_last_partial_batch():
    x, y = _tagged_images(300), np.arange(300) % 10
    batches = Batches(x, y, batch_size=128)
    assert len(batches) == 3
    sizes = [len(batches[i][0]) for i in range(3)]
    assert sizes == [128, 128, 44]
    images, labels = batches[2]
    assert images.shape == (44, 32, 32, 3) and images.dtype == np.float32
    assert labels.shape == (44,) and labels.dtype == y.dtype
    with pytest.raises(IndexError):
        batches[3]


def test_normalization_matches_the_reference():
    x, y = _tagged_images(50), np.zeros(50, np.int64)
    images, _ = Batches(x, y, batch_size=50, shuffle=False)[0]
    np.testing.assert_allclose(images, _reference_normalize(x), rtol=0, atol=1e-5)
    raw, _ = Batches(x, y, batch_size=50, shuffle=False, normalize=False)[0]
    np.testing.assert_allclose(raw, x / 255.0, rtol=0, atol=1e-6)


def test_channels_first_is_the_nchw_transpose():
    x, y = _tagged_images(20), np.zeros(20, np.int64)
    nhwc, _ = Batches(x, y, batch_size=8, seed=4, augment=True)[1]
    nchw, _ = Batches(x, y, batch_size=8, seed=4, augment=True, data_format="channels_first")[1]
    assert nchw.shape == (8, 3, 32, 32) and nchw.flags.c_contiguous
    np.testing.assert_array_equal(nchw, nhwc.transpose(0, 3, 1, 2))


def _epoch(batches):
    """Every batch of the current epoch, in order, then move to the next epoch."""
    out = [batches[i] for i in range(len(batches))]
    batches.on_epoch_end()
    return np.concatenate([b[0] for b in out]), np.concatenate([b[1] for b in out])


def _epoch_ids(batches):
    images, labels = _epoch(batches)
    return _ids(np.rint(images * 255).astype(np.uint8)), labels


def test_unshuffled_order_is_the_input_order():
    x, y = _tagged_images(70), np.arange(70)
    batches = Batches(x, y, batch_size=16, shuffle=False, normalize=False)
    for _ in range(2):
        ids, labels = _epoch_ids(batches)
        np.testing.assert_array_equal(ids, np.arange(70))
        np.testing.assert_array_equal(labels, y)


def test_each_epoch_is_a_new_permutation_reproduced_by_the_seed():
    x, y = _tagged_images(70), np.arange(70)
    first = Batches(x, y, batch_size=16, seed=1, normalize=False)
    second = Batches(x, y, batch_size=16, seed=1, normalize=False)
    other = Batches(x, y, batch_size=16, seed=2, normalize=False)
    epochs = [_epoch_ids(first) for _ in range(3)]
    for ids, labels in epochs:
        np.testing.assert_array_equal(np.sort(ids), np.arange(70))  # every image once
        np.testing.assert_array_equal(labels, ids)  # labels travel with their images
    assert not np.array_equal(epochs[0][0], epochs[1][0])
    for ids, _ in epochs:
        np.testing.assert_array_equal(_epoch_ids(second)[0], ids)
    assert not np.array_equal(_epoch_ids(other)[0], epochs[0][0])
    assert first.epoch == 3


def test_crop_flip_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    rows, cols = np.array([0, 8, 4, 2, 8, 0]), np.array([0, 8, 4, 7, 0, 3])
    flips = np.array([False, True, False, True, True, False])
    expected = []
    for image, r, c, flip in zip(images, rows, cols, flips):
        padded = np.zeros((40, 40, 3), np.uint8)
        padded[4:36, 4:36] = image
        crop = padded[r : r + 32, c : c + 32]
        expected.append(crop[:, ::-1] if flip else crop)
    np.testing.assert_array_equal(crop_flip(images, rows, cols, flips), np.stack(expected))


def test_cut_out_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(5, 10, 12, 3)).astype(np.float32)
    rows, cols = np.array([0, 9, 4, 5, 2]), np.array([0, 11, 6, 1, 10])
    expected = images.copy()
    for i in range(5):
        for r in range(10):
            for c in range(12):
                if rows[i] - 2 <= r < rows[i] + 2 and cols[i] - 2 <= c < cols[i] + 2:  # side 4, from centre - 2
                    expected[i, r, c] = 0.0
    cut_out(images, rows, cols, 4)
    np.testing.assert_array_equal(images, expected)


def test_cutout_zeroes_one_clipped_square_per_image_after_normalization():
    x, y = np.full((64, 32, 32, 3), 200, np.uint8), np.zeros(64, np.int64)
    images, _ = Batches(x, y, batch_size=64, shuffle=False, cutout=8)[0]
    zeroed = np.all(images == 0, axis=-1)
    assert np.all(images[~zeroed] != 0)
    for mask in zeroed:
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8  # clipped at the borders
        assert mask.sum() == len(rows) * len(cols)  # one rectangle
        assert np.all(np.diff(rows) == 1) and np.all(np.diff(cols) == 1)
    assert (zeroed.sum(axis=(1, 2)) == 64).sum() > 10  # most squares fit whole
    assert len({tuple(np.argwhere(m)[0]) for m in zeroed}) > 30  # and move


def _mixing_weight(labels, targets):
    """The weight of a mixed batch's own images, read off a target whose two labels differ."""
    i = np.nonzero(labels != labels[::-1])[0][0]
    return targets[i, labels[i]]


def test_mixup_mixes_each_batch_with_its_reverse_and_the_targets_alike():
    """Against the same batches unmixed: image and target i are lam * own + (1 - lam) * those of n - 1 - i."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(1600, 8, 8, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=1600)
    kwargs = dict(batch_size=8, augment=True, cutout=4, seed=3)
    plain, mixed = Batches(x, y, **kwargs), Batches(x, y, mixup=1.0, num_classes=10, **kwargs)
    weights = []
    for index in range(len(plain)):
        (images, labels), (mixed_images, targets) = plain[index], mixed[index]
        lam = _mixing_weight(labels, targets)
        one_hot = np.eye(10)[labels]
        np.testing.assert_allclose(targets, lam * one_hot + (1 - lam) * one_hot[::-1], atol=1e-6)
        np.testing.assert_allclose(mixed_images, lam * images + (1 - lam) * images[::-1], atol=1e-5)
        assert targets.dtype == mixed_images.dtype == np.float32
        weights.append(lam)
    # Beta(1, 1) is uniform on (0, 1): mean 1/2, standard deviation 0.2887; 200 draws.
    assert abs(np.mean(weights) - 0.5) < 0.06 and abs(np.std(weights) - 0.2887) < 0.04
    assert np.mean(np.abs(np.asarray(weights) - 0.5) > 0.45) < 0.2  # not U-shaped like Beta(0.2, 0.2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mixup=0.2), r"^mixup needs num_classes, the length of its targets\. Received: mixup=0\.2, num_classes=None$"),
        (dict(mixup=-1.0, num_classes=10), r"^mixup must be a number in \[0, inf\)\. Received: mixup=-1\.0$"),
        (dict(mixup=0.2, num_classes=3), r"^num_classes must exceed every label \(largest: 9\)\. Received: num_classes=3$"),
    ],
)
def test_mixup_errors(kwargs, message):
    x, y = np.zeros((10, 4, 4, 3), np.uint8), np.arange(10)
    with pytest.raises(ValueError, match=message):
        Batches(x, y, **kwargs)


def _candidates(image):
    """All 81 crops of the 4-pixel zero-padded image, each unflipped and flipped."""
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    crops = [padded[r : r + 32, c : c + 32] for r in range(9) for c in range(9)]
    return [(r, c, f) for r in range(9) for c in range(9) for f in (False, True)], [
        crop[:, ::-1] if f else crop for crop in crops for f in (False, True)
    ]


def test_augmentation_is_a_padded_crop_and_flip_and_varies():
    x, y = _tagged_images(64, seed=3), np.zeros(64, np.int64)
    images, _ = Batches(x, y, batch_size=64, shuffle=False, augment=True, normalize=False)[0]
    images = np.rint(images * 255).astype(np.uint8)
    seen = []
    for original, augmented in zip(x, images):
        params, crops = _candidates(original)
        matches = [p for p, crop in zip(params, crops) if np.array_equal(crop, augmented)]
        assert len(matches) == 1, "each output must be exactly one crop/flip of its input"
        seen.append(matches[0])
    offsets = {(r, c) for r, c, _ in seen}
    flips = [f for _, _, f in seen]
    assert len(offsets) > 20 and 10 < sum(flips) < 54
    assert sum(1 for r, c, f in seen if (r, c, f) == (4, 4, False)) < 5  # mostly changed


def test_augmentation_is_reproducible_and_independent_of_access_order():
    x, y = _tagged_images(40), np.zeros(40, np.int64)
    a = Batches(x, y, batch_size=16, seed=9, augment=True)
    b = Batches(x, y, batch_size=16, seed=9, augment=True)
    backwards = [b[i][0] for i in reversed(range(len(b)))][::-1]
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i][0], backwards[i])
        np.testing.assert_array_equal(a[i][0], a[i][0])  # same call, same result
    first_epoch = a[0][0]
    a.on_epoch_end()
    assert not np.array_equal(a[0][0], first_epoch)
    c = Batches(x, y, batch_size=16, seed=10, augment=True)
    assert not np.array_equal(c[0][0], first_epoch)


def test_padding_becomes_minus_mean_over_std_after_normalization():
    x, y = np.full((1, 32, 32, 3), 255, np.uint8), np.zeros(1, np.int64)
    shifted = crop_flip(x, np.array([0]), np.array([0]), np.array([False]))
    assert (shifted[0, :4] == 0).all() and (shifted[0, 4:, 4:] == 255).all()
    images, _ = Batches(x, y, augment=True, seed=0)[0]
    corners = images[0, [0, 0, -1, -1], [0, -1, 0, -1]]
    padding_value = -np.array(CIFAR10_MEAN) / np.array(CIFAR10_STD)
    white = (1 - np.array(CIFAR10_MEAN)) / np.array(CIFAR10_STD)
    for corner in corners:  # each corner is padding or image, nothing else
        assert np.allclose(corner, padding_value, atol=1e-5) or np.allclose(corner, white, atol=1e-5)


_IMAGES = "x must be uint8 images of shape (n, height, width, channels). Received: "


@pytest.mark.parametrize(
    "x_shape, x_dtype, y_size, kwargs, message",
    [
        ((4, 32, 32, 3), np.float32, 4, {}, _IMAGES + "x.dtype=float32, x.shape=(4, 32, 32, 3)"),
        ((4, 32, 32), np.uint8, 4, {}, _IMAGES + "x.dtype=uint8, x.shape=(4, 32, 32)"),
        ((4, 32, 32, 3), np.uint8, 5, {}, "y must be one label per image of x (4). Received: y.shape=(5,)"),
        (
            (4, 32, 32, 1),
            np.uint8,
            4,
            {},
            "normalize=True needs 3-channel (RGB) images in NHWC layout. Received: x.shape=(4, 32, 32, 1)",
        ),
        (
            (4, 32, 32, 1),
            np.uint8,
            4,
            {"normalize": False, "trivial_augment": True},
            "trivial_augment needs RGB images of at least 3x3 pixels in NHWC layout. Received: x.shape=(4, 32, 32, 1)",
        ),
        (
            (4, 2, 32, 3),
            np.uint8,
            4,
            {"trivial_augment": True},
            "trivial_augment needs RGB images of at least 3x3 pixels in NHWC layout. Received: x.shape=(4, 2, 32, 3)",
        ),
        ((4, 32, 32, 3), np.uint8, 4, {"batch_size": 0}, "batch_size must be positive. Received: batch_size=0"),
        (
            (4, 32, 32, 3),
            np.uint8,
            4,
            {"data_format": "NCHW"},
            "data_format must be one of 'channels_last', 'channels_first'. Received: data_format='NCHW'",
        ),
        ((4, 32, 32, 3), np.uint8, 4, {"seed": -2}, "seed must be non-negative. Received: seed=-2"),
    ],
)
def test_batches_errors(x_shape, x_dtype, y_size, kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Batches(np.zeros(x_shape, x_dtype), np.zeros(y_size), **kwargs)


def _fit(data_seed):
    x, y = _tagged_images(40), np.arange(40) % 3
    batches = Batches(x, y, batch_size=16, augment=True, seed=data_seed)
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Conv2D(2, 3), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)]
    model = keras.Sequential([keras.Input((32, 32, 3)), *layers])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(batches, epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    assert batches.epoch >= 2
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def test_fit_with_the_same_data_seed_trains_identically():
    first, again, other = _fit(0), _fit(0), _fit(1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, c) for a, c in zip(first, other))


@pytest.mark.parametrize("augment, cutout, mixup, trivial_augment", [(False, 0, 0, False), (True, 0, 0, False),
                                                                     (True, 8, 0, False), (False, 5, 0, False),
                                                                     (True, 8, 0.4, False), (False, 0, 0, True),
                                                                     (True, 8, 0.4, True)])  # fmt: skip
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_tf_dataset_gives_the_same_batches(augment, cutout, mixup, trivial_augment, data_format):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the native tf.data pipeline is TensorFlow's")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(70, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=70)
    batches = Batches(x, y, batch_size=32, augment=augment, cutout=cutout, mixup=mixup, num_classes=10, seed=3,
                      trivial_augment=trivial_augment, data_format=data_format)  # fmt: skip
    dataset = batches.tf_dataset()
    for _ in range(2):  # each pass reads the epoch the Batches is at, as fit does
        got = list(dataset)
        assert len(got) == len(batches) == 3
        for index, (images, labels) in enumerate(got):
            expected_images, expected_labels = batches[index]
            np.testing.assert_array_equal(images.numpy(), expected_images)
            np.testing.assert_array_equal(labels.numpy(), expected_labels)
        batches.on_epoch_end()
