"""`Batches`: shuffled, augmented, normalized mini-batches as a Keras `PyDataset`."""

import math

import keras
import numpy as np

from sepconv._validation import choice, non_negative_int, number, optional, positive_int
from sepconv.data import _trivial_augment

# Per-channel (R, G, B) mean and standard deviation of the 50,000 official CIFAR-10
# training images, pixel values scaled to [0, 1], the deviation taken over all pixels of
# a channel. (The often-copied 0.2023, 0.1994, 0.2010 average per-image deviations
# instead.) The image-folder JPEG copy gives the same values within 0.002.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
_PAD = 4


class Batches(keras.utils.PyDataset):
    """Mini-batches `(float32 images, int64 labels)` from uint8 image arrays.

    Each epoch visits every image once, in an order drawn from `(seed, epoch)`; the last
    partial batch is included. With `augment=True` each image is randomly cropped from
    its copy zero-padded by 4 pixels per side and flipped left-right with probability
    1/2, drawn from `(seed, epoch, batch index)`; with `trivial_augment=True` each image
    then gets one TrivialAugment operation at a random magnitude (Müller & Hutter 2021,
    arXiv:2103.10158; its wide magnitudes, Pillow's colour operations: see
    `sepconv.data._trivial_augment`); with `cutout=s` a square of side `s`
    centred uniformly in the image (clipped at its borders) is then set to zero after
    normalization, i.e. to the mean pixel (DeVries & Taylor 2017, arXiv:1708.04552),
    drawn from the same generator. With `mixup=a`, each batch is then mixed with itself in
    reverse order, `lam * images + (1 - lam) * images[::-1]` with one `lam ~ Beta(a, a)` per
    batch from the same generator (Zhang et al. 2017, arXiv:1710.09412; the batch order is
    already random, so its reverse is a random pairing), and the labels become the targets
    `lam * one_hot(labels) + (1 - lam) * one_hot(labels[::-1])`, float32 `(n, num_classes)`.
    Same arguments, same batches, on any backend and in any access order, so two models
    compared see identical data.

    `on_epoch_end()` moves to the next epoch. `fit` calls it after each epoch and once
    before the first (after peeking at one batch), so `fit(epochs=2)` trains on epochs
    1 and 2; identical calls still give identical data. Keras's `fit`
    also shuffles the order of batches of a `PyDataset` with Python's `random` unless it
    is called with `shuffle=False`; pass that (or seed Python's `random`) to keep the
    batch order reproducible.

    Args:
        x: uint8 images `(n, height, width, channels)`.
        y: labels `(n,)`.
        batch_size: images per batch.
        shuffle: draw a new order each epoch; False keeps the given order.
        augment: random crop with 4-pixel zero padding and horizontal flip.
        trivial_augment: one random TrivialAugment operation per image, after the crop.
        cutout: side of the square cut out of each image; 0 for none.
        mixup: `a` of the Beta distribution of the mixing weight; 0 for no mixing.
        num_classes: length of the mixed targets; required with `mixup`.
        seed: non-negative int fixing order and augmentation.
        normalize: True standardizes each channel with `CIFAR10_MEAN` and `CIFAR10_STD`
            (padding pixels become `-mean / std`); False only scales pixels to [0, 1].
        data_format: "channels_last" yields NHWC, "channels_first" NCHW.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` of `PyDataset`.
    """

    def __init__(
        self,
        x,
        y,
        *,
        batch_size=128,
        shuffle=True,
        augment=False,
        trivial_augment=False,
        cutout=0,
        mixup=0.0,
        num_classes=None,
        seed=0,
        normalize=True,
        data_format="channels_last",
        **kwargs,
    ):
        super().__init__(**kwargs)
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(
                f"x must be uint8 images of shape (n, height, width, channels). "
                f"Received: x.dtype={x.dtype}, x.shape={x.shape}"
            )
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"y must be one label per image of x ({len(x)}). Received: y.shape={y.shape}")
        if len(x) == 0:
            raise ValueError(f"x must hold at least one image. Received: x.shape={x.shape}")
        if normalize and x.shape[-1] != len(CIFAR10_MEAN):
            raise ValueError(
                f"normalize=True needs 3-channel (RGB) images in NHWC layout. Received: x.shape={x.shape}"
            )
        if trivial_augment and (x.shape[-1] != 3 or min(x.shape[1:3]) < 3):
            raise ValueError(
                f"trivial_augment needs RGB images of at least 3x3 pixels in NHWC layout. Received: x.shape={x.shape}"
            )
        non_negative_int(seed, "seed")
        self.x, self.y = x, y
        self.batch_size = positive_int(batch_size, "batch_size")
        self.shuffle = bool(shuffle)
        self.augment = bool(augment)
        self.trivial_augment = bool(trivial_augment)
        self.cutout = non_negative_int(cutout, "cutout")
        self.mixup = number(mixup, "mixup", low=0.0)
        self.num_classes = optional(positive_int)(num_classes, "num_classes")
        if self.mixup and self.num_classes is None:
            raise ValueError(f"mixup needs num_classes, the length of its targets. Received: mixup={mixup}, "
                             "num_classes=None")
        if self.mixup and y.max() >= self.num_classes:
            raise ValueError(f"num_classes must exceed every label (largest: {y.max()}). "
                             f"Received: num_classes={num_classes}")
        self.seed = int(seed)
        self.normalize = bool(normalize)
        self.data_format = choice(data_format, ("channels_last", "channels_first"), "data_format")
        if self.normalize:
            std = np.asarray(CIFAR10_STD, dtype=np.float64)
            self._scale = (1.0 / (255.0 * std)).astype(np.float32)
            self._shift = (-np.asarray(CIFAR10_MEAN) / std).astype(np.float32)
        else:
            self._scale, self._shift = np.float32(1.0 / 255.0), np.float32(0.0)
        self.epoch = 0
        self._order = self._epoch_order()

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index out of range [0, {len(self)}). Received: index={index}")
        rows, crops, centers, mix, operations = self._plan(index)
        images, labels = self.x[rows], self.y[rows]
        if crops is not None:
            images = crop_flip(images, *crops)
        if operations is not None:
            images = _trivial_augment.apply_numpy(images, *operations)
        # Two passes over the float batch (scale while converting, then shift in place).
        images = np.multiply(images, self._scale, dtype=np.float32)
        images += self._shift
        if centers is not None:
            cut_out(images, *centers, self.cutout)
        if mix is not None:
            images = mix * images + np.float32(1 - mix) * images[::-1]
            one_hot = np.eye(self.num_classes, dtype=np.float32)[labels]
            labels = mix * one_hot + np.float32(1 - mix) * one_hot[::-1]
        if self.data_format == "channels_first":
            images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        return images, labels

    def _plan(self, index):
        """Rows of batch `index`, its crop offsets and flips, its cutout centres, its mixing
        weight and its TrivialAugment operations (each None when off)."""
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        if not (self.augment or self.cutout or self.mixup or self.trivial_augment):
            return rows, None, None, None, None
        rng = np.random.default_rng((self.seed, self.epoch, index))
        crops = crop_flip_draws(len(rows), rng) if self.augment else None
        height, width = self.x.shape[1:3]
        centers = None
        if self.cutout:
            centers = (rng.integers(0, height, size=len(rows)), rng.integers(0, width, size=len(rows)))
        mix = np.float32(rng.beta(self.mixup, self.mixup)) if self.mixup else None
        # Drawn last, so runs without it keep the batches they always had.
        operations = _trivial_augment.draw(len(rows), height, width, rng) if self.trivial_augment else None
        return rows, crops, centers, mix, operations

    def tf_dataset(self):
        """The same batches as a `tf.data.Dataset` whose pixel work runs in TensorFlow ops.

        Python only draws each batch's rows and crops (a few hundred integers); gathering,
        cropping, flipping and normalizing run as TensorFlow ops on the whole image array
        held in memory, outside Python's GIL, prefetched one batch ahead. Each batch is
        planned from the epoch counter and order current when it is drawn, as `self[i]` is,
        so a pass started after `on_epoch_end` gives that epoch's batches (tested).
        """
        import tensorflow as tf

        images = tf.constant(self.x)
        labels = tf.constant(self.y)
        scale = tf.constant(np.broadcast_to(self._scale, (self.x.shape[-1],)), tf.float32)
        shift = tf.constant(np.broadcast_to(self._shift, (self.x.shape[-1],)), tf.float32)
        height, width = self.x.shape[1:3]

        def plans():
            for index in range(len(self)):
                rows, crops, centers, mix, operations = self._plan(index)
                zeros = np.zeros(len(rows), np.int64)
                if crops is None:
                    crops = (zeros, zeros, np.zeros(len(rows), bool))
                centers = (zeros, zeros) if centers is None else centers
                mix = np.float32(1) if mix is None else mix
                if operations is None:
                    operations = (zeros, np.zeros(len(rows), np.float32), np.zeros((len(rows), 0), np.int64))
                yield (rows.astype(np.int64), *(np.asarray(c) for c in (*crops, *centers)), mix, *operations)

        def batch(rows, crop_rows, crop_cols, flips, center_rows, center_cols, mix, ops, params, maps):
            x = tf.gather(images, rows)
            if self.augment:
                x = tf.pad(x, [[0, 0], [_PAD, _PAD], [_PAD, _PAD], [0, 0]])
                x = tf.gather(x, crop_rows[:, None] + tf.range(height, dtype=tf.int64), axis=1, batch_dims=1)
                cols = crop_cols[:, None] + tf.range(width, dtype=tf.int64)
                cols = tf.where(flips[:, None], tf.reverse(cols, axis=[1]), cols)
                x = tf.gather(x, cols, axis=2, batch_dims=1)
            if self.trivial_augment:
                x = _trivial_augment.apply_tensorflow(x, ops, params, maps)
            x = tf.cast(x, tf.float32) * scale + shift
            if self.cutout:
                cut = (_inside(tf.range(height, dtype=tf.int64), center_rows, self.cutout)[:, :, None]
                       & _inside(tf.range(width, dtype=tf.int64), center_cols, self.cutout)[:, None, :])  # fmt: skip
                x = x * tf.cast(~cut, tf.float32)[..., None]
            y = tf.gather(labels, rows)
            if self.mixup:
                x = mix * x + (1 - mix) * tf.reverse(x, axis=[0])
                one_hot = tf.one_hot(y, self.num_classes, dtype=tf.float32)
                y = mix * one_hot + (1 - mix) * tf.reverse(one_hot, axis=[0])
            if self.data_format == "channels_first":
                x = tf.transpose(x, (0, 3, 1, 2))
            return x, y

        vector = tf.TensorSpec((None,), tf.int64)
        signature = (vector, vector, vector, tf.TensorSpec((None,), tf.bool), vector, vector,
                     tf.TensorSpec((), tf.float32), vector, tf.TensorSpec((None,), tf.float32),
                     tf.TensorSpec((None, None), tf.int64))  # fmt: skip
        dataset = tf.data.Dataset.from_generator(plans, output_signature=signature)
        # A known length: Keras stops at the last batch instead of calling one step past it
        # (which would still advance the optimizer's step count and its schedule).
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(self)))
        return dataset.map(batch).prefetch(1)

    def on_epoch_end(self):
        self.epoch += 1
        self._order = self._epoch_order()

    def _epoch_order(self):
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng((self.seed, self.epoch)).permutation(len(self.x))


def random_crop_flip(images, rng):
    """Random 4-pixel-padded crops and horizontal flips of uint8 NHWC `images`."""
    return crop_flip(images, *crop_flip_draws(len(images), rng))


def crop_flip_draws(n, rng):
    """Row offsets, column offsets (each uniform in 0..8) and flips (probability 1/2), drawn in that order."""
    rows = rng.integers(0, 2 * _PAD + 1, size=n)
    cols = rng.integers(0, 2 * _PAD + 1, size=n)
    flips = rng.random(n) < 0.5
    return rows, cols, flips


def crop_flip(images, rows, cols, flips):
    """Crops image `i` at `(rows[i], cols[i])` of its zero-padded copy, then flips it if `flips[i]`.

    Copies each image's visible window straight into a zeroed batch (flipped images
    through a column-reversed view) instead of padding the batch and gathering pixel by
    pixel: the same result at a fraction of the memory traffic.
    """
    n, height, width, _ = images.shape
    out = np.zeros_like(images)
    for i in range(n):
        dr, dc = int(rows[i]) - _PAD, int(cols[i]) - _PAD  # source offset of output pixel (0, 0)
        target = out[i, :, ::-1] if flips[i] else out[i]
        target[max(0, -dr) : height - max(0, dr), max(0, -dc) : width - max(0, dc)] = images[
            i, max(0, dr) : height + min(0, dr), max(0, dc) : width + min(0, dc)
        ]
    return out


def cut_out(images, center_rows, center_cols, size):
    """Zeroes, in place, a `size` x `size` square of float NHWC image `i` starting `size // 2`
    pixels above and left of `(center_rows[i], center_cols[i])`, clipped at the borders."""
    height, width = images.shape[1:3]
    for i, (row, col) in enumerate(zip(center_rows, center_cols)):
        top, left = int(row) - size // 2, int(col) - size // 2
        images[i, max(0, top) : max(0, min(height, top + size)), max(0, left) : max(0, min(width, left + size))] = 0


def _inside(positions, centers, size):
    """`[i, p]`: whether pixel index `p` lies in the cutout of image `i` (see `cut_out`)."""
    start = centers[:, None] - size // 2
    return (positions[None] >= start) & (positions[None] < start + size)
