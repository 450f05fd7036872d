"""TrivialAugment, per image, with numpy and TensorFlow giving bit-identical images.

TrivialAugment (Müller & Hutter 2021, arXiv:2103.10158), its "wide" magnitudes (those of
torchvision's `TrivialAugmentWide`): each image gets one operation drawn uniformly from
`OPS` and one of 31 magnitude levels drawn uniformly, negated with probability 1/2 where
the operation has a direction.

The colour operations are Pillow's (`ImageOps.autocontrast`, `equalize`, `solarize`,
`posterize`; `ImageEnhance.Contrast`, `Color`, `Brightness`, `Sharpness`) in integer
arithmetic, tested against Pillow. Their blend factors are multiples of 1/256, so every
float32 value along the way is exact: numpy and TensorFlow, one formula written once over
both (`_Numpy`, `_TensorFlow`), agree bit for bit. The geometric ones (shear, translate,
rotate about the image centre) map each output pixel to its nearest source pixel; the maps
are drawn in numpy with the plan, and pixels from outside the image are 0, like the
crop's padding.
"""

import math

import numpy as np

OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "auto_contrast", "equalize",
       "solarize", "posterize", "contrast", "color", "brightness", "sharpness")  # fmt: skip
LEVELS = 31
_GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")


def draw(n, height, width, rng):
    """Each image's operation, its parameter and its pixel map, drawn from `rng`.

    Returns `(ops, params, maps)`: operation indices into `OPS` `(n,)`; float32 parameters
    `(n,)`: the threshold of solarize, the step posterize rounds down to (`2 ** (8 - bits)`)
    or the factor of a blend; int64 maps `(n, height * width)`, the flat index of each
    output pixel's source pixel, -1 outside the image (the identity for colour operations).
    """
    ops = rng.integers(0, len(OPS), size=n)
    level = rng.integers(0, LEVELS, size=n) / (LEVELS - 1)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    signed = level * sign  # solarize and posterize read `level`
    params = np.zeros(n, np.float32)
    affine = np.tile(np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]), (n, 1))  # the identity maps each pixel to itself
    for i, name in enumerate(OPS[op] for op in ops):
        if name in _GEOMETRIC:
            affine[i] = _affine(name, signed[i], height, width)
        elif name == "solarize":
            params[i] = 255.0 * (1.0 - level[i])
        elif name == "posterize":
            params[i] = 2 ** round(level[i] * 6)  # keeps 8 down to 2 bits
        elif name in ("contrast", "color", "brightness", "sharpness"):
            params[i] = np.round((1.0 + 0.99 * signed[i]) * 256) / 256  # a multiple of 1/256: exact blends
    return ops, params, _pixel_maps(affine, height, width)


def _pixel_maps(affine, height, width):
    """Flat source index of each output pixel (nearest neighbour, -1 outside), one map per affine row."""
    a, b, c, d, e, f = (coefficient[:, None, None] for coefficient in affine.T)
    rows, cols = np.mgrid[0:height, 0:width] + 0.5  # pixel centres
    src_cols, src_rows = np.floor(a * cols + b * rows + c), np.floor(d * cols + e * rows + f)
    inside = (src_rows >= 0) & (src_rows < height) & (src_cols >= 0) & (src_cols < width)
    return np.where(inside, src_rows * width + src_cols, -1).astype(np.int64).reshape(len(affine), -1)


def _affine(name, signed_level, height, width):
    """Pillow's affine data `(a, b, c, d, e, f)`: output point (x, y) reads input (a x + b y + c, d x + e y + f).

    Shears and rotations are about the image centre; rotations turn counter-clockwise as
    seen, with the matrix Pillow's `Image.rotate` builds (cosine and sine rounded to 15 digits).
    """
    if name in ("shear_x", "shear_y"):
        s = 0.99 * signed_level
        return (1, s, -s * height / 2, 0, 1, 0) if name == "shear_x" else (1, 0, 0, s, 1, -s * width / 2)
    if name in ("translate_x", "translate_y"):
        t = round(32 * signed_level)
        return (1, 0, -t, 0, 1, 0) if name == "translate_x" else (1, 0, 0, 0, 1, -t)
    angle = -math.radians(135 * signed_level)
    cos, sin = round(math.cos(angle), 15), round(math.sin(angle), 15)
    cx, cy = width / 2, height / 2
    return cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy


def apply_numpy(images, ops, params, maps):
    """uint8 NHWC `images` augmented as `draw` planned them (each operation on its images only)."""
    xp = _Numpy
    x = xp.remap(images.astype(np.int32), maps)
    out = x.copy()
    for op, name in enumerate(OPS):
        chosen = np.flatnonzero(ops == op)
        if len(chosen) and name in _COLOUR:
            out[chosen] = _COLOUR[name](xp, x[chosen], params[chosen][:, None, None, None])
    return out.astype(np.uint8)


def apply_tensorflow(images, ops, params, maps):
    """`apply_numpy` in TensorFlow ops, on tensors (the same values, bit for bit)."""
    import tensorflow as tf

    xp = _TensorFlow
    x = xp.remap(tf.cast(images, tf.int32), maps)
    out = x
    for op, name in enumerate(OPS):
        if name in _COLOUR:
            chosen = tf.where(ops == op)
            changed = _COLOUR[name](xp, tf.gather_nd(x, chosen), tf.gather_nd(params, chosen)[:, None, None, None])
            out = tf.tensor_scatter_nd_update(out, chosen, changed)
    return tf.cast(out, tf.uint8)


# --- the colour operations, one formula for both array libraries ------------------------------


def _auto_contrast(xp, x, _):
    low, high = xp.min(x), xp.max(x)  # per image and channel
    stretched = xp.clip((x - low) * 255 // xp.maximum(high - low, 1), 0, 255)
    return xp.where(high > low, stretched, x)


def _equalize(xp, x, _):
    n, (height, width, channels) = xp.batch_size(x), x.shape[1:]
    offsets = (xp.arange(n)[:, None, None, None] * channels + xp.arange(channels)) * 256
    histogram = xp.reshape(xp.bincount(xp.reshape(x + offsets, [-1]), n * channels * 256), [-1, 1, 1, channels, 256])
    last = xp.take_along_last(histogram, xp.max(x)[..., None])[..., 0]  # count of the largest value
    step = (height * width - last) // 255
    lut = (step[..., None] // 2 + xp.cumsum(histogram) - histogram) // xp.maximum(step, 1)[..., None]
    lut = xp.reshape(xp.clip(lut, 0, 255), [-1])
    return xp.where(step > 0, xp.gather(lut, x + offsets), x)  # Pillow keeps images it cannot spread


def _solarize(xp, x, threshold):
    return xp.where(xp.float32(x) >= threshold, 255 - x, x)


def _posterize(xp, x, step):
    return x - x % xp.int32(step)


def _gray(xp, x):
    """Pillow's RGB to L: (19595 R + 38470 G + 7471 B + 2**15) >> 16, per pixel `(n, h, w, 1)`."""
    return (x[..., :1] * 19595 + x[..., 1:2] * 38470 + x[..., 2:3] * 7471 + 32768) // 65536


def _blend(xp, degenerate, x, factor):
    """Pillow's `Image.blend(degenerate, x, factor)`: degenerate + factor (x - degenerate), truncated, clipped."""
    return xp.int32(xp.clip(xp.floor(xp.float32(degenerate) + factor * xp.float32(x - degenerate)), 0, 255))


def _contrast(xp, x, factor):
    gray = _gray(xp, x)
    pixels = x.shape[1] * x.shape[2]
    mean = (2 * xp.sum(gray) + pixels) // (2 * pixels)  # int(mean + 0.5), as Pillow rounds it
    return _blend(xp, mean, x, factor)


def _color(xp, x, factor):
    return _blend(xp, _gray(xp, x), x, factor)


def _brightness(xp, x, factor):
    return _blend(xp, 0 * x, x, factor)


def _sharpness(xp, x, factor):
    # Pillow's SMOOTH filter (1 1 1 / 1 5 1 / 1 1 1, divided by 13, rounded); border pixels kept.
    height, width = x.shape[1], x.shape[2]
    total = 4 * x[:, 1:-1, 1:-1]
    for dr in range(3):
        for dc in range(3):
            total = total + x[:, dr : dr + height - 2, dc : dc + width - 2]
    smooth = xp.pad_border(x, (total + 6) // 13)
    return _blend(xp, smooth, x, factor)


_COLOUR = {"auto_contrast": _auto_contrast, "equalize": _equalize, "solarize": _solarize, "posterize": _posterize,
           "contrast": _contrast, "color": _color, "brightness": _brightness, "sharpness": _sharpness}  # fmt: skip


class _Numpy:
    """The array functions the formulas use, in numpy."""

    arange, where, maximum, clip, floor, reshape = np.arange, np.where, np.maximum, np.clip, np.floor, np.reshape

    @staticmethod
    def batch_size(x):
        return len(x)

    @staticmethod
    def min(x):
        return x.min(axis=(1, 2), keepdims=True)

    @staticmethod
    def max(x):
        return x.max(axis=(1, 2), keepdims=True)

    @staticmethod
    def sum(x):
        return x.sum(axis=(1, 2, 3), keepdims=True)

    @staticmethod
    def bincount(x, length):
        return np.bincount(x, minlength=length).astype(np.int32)

    @staticmethod
    def cumsum(x):
        return np.cumsum(x, axis=-1, dtype=np.int32)

    @staticmethod
    def take_along_last(x, indices):
        return np.take_along_axis(x, indices, axis=-1)

    @staticmethod
    def gather(table, indices):
        return table[indices]

    @staticmethod
    def float32(x):
        return np.asarray(x, np.float32)

    @staticmethod
    def int32(x):
        return np.asarray(x).astype(np.int32)

    @staticmethod
    def pad_border(x, inner):
        out = x.copy()
        out[:, 1:-1, 1:-1] = inner
        return out

    @staticmethod
    def remap(x, maps):
        n, height, width, channels = x.shape
        flat = np.take_along_axis(x.reshape(n, height * width, channels), np.maximum(maps, 0)[..., None], axis=1)
        return np.where(maps[..., None] >= 0, flat, 0).reshape(x.shape)


class _TensorFlow:
    """The array functions the formulas use, in TensorFlow."""

    @staticmethod
    def _tf():
        import tensorflow as tf

        return tf

    @classmethod
    def arange(cls, n):
        return cls._tf().range(n, dtype="int32")

    @classmethod
    def batch_size(cls, x):
        return cls._tf().shape(x)[0]

    @classmethod
    def where(cls, condition, a, b):
        return cls._tf().where(condition, a, b)

    @classmethod
    def maximum(cls, a, b):
        return cls._tf().maximum(a, b)

    @classmethod
    def clip(cls, x, low, high):
        return cls._tf().clip_by_value(x, low, high)

    @classmethod
    def floor(cls, x):
        return cls._tf().floor(x)

    @classmethod
    def min(cls, x):
        return cls._tf().reduce_min(x, axis=(1, 2), keepdims=True)

    @classmethod
    def max(cls, x):
        return cls._tf().reduce_max(x, axis=(1, 2), keepdims=True)

    @classmethod
    def sum(cls, x):
        return cls._tf().reduce_sum(x, axis=(1, 2, 3), keepdims=True)

    @classmethod
    def reshape(cls, x, shape):
        return cls._tf().reshape(x, shape)

    @classmethod
    def bincount(cls, x, length):
        return cls._tf().math.bincount(x, minlength=length, maxlength=length, dtype="int32")

    @classmethod
    def cumsum(cls, x):
        return cls._tf().cumsum(x, axis=-1)

    @classmethod
    def take_along_last(cls, x, indices):
        return cls._tf().gather(x, indices, batch_dims=len(x.shape) - 1)

    @classmethod
    def gather(cls, table, indices):
        return cls._tf().gather(table, indices)

    @classmethod
    def float32(cls, x):
        return cls._tf().cast(x, "float32")

    @classmethod
    def int32(cls, x):
        return cls._tf().cast(x, "int32")

    @classmethod
    def pad_border(cls, x, inner):
        tf = cls._tf()
        padded = tf.pad(inner, [[0, 0], [1, 1], [1, 1], [0, 0]])
        rows, cols = tf.range(x.shape[1]), tf.range(x.shape[2])
        border = ((rows == 0) | (rows == x.shape[1] - 1))[:, None] | ((cols == 0) | (cols == x.shape[2] - 1))[None]
        return tf.where(border[None, :, :, None], x, padded)

    @classmethod
    def remap(cls, x, maps):
        tf = cls._tf()
        height, width, channels = x.shape[1:]  # static: the formulas slice with them
        flat = tf.gather(tf.reshape(x, [-1, height * width, channels]), tf.maximum(maps, 0), batch_dims=1)
        return tf.reshape(tf.where((maps >= 0)[..., None], flat, 0), [-1, height, width, channels])
