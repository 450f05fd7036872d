"""Loading CIFAR-10 copies: formats, sources, safety, errors and the decode cache.

Small synthetic copies are built in tmp_path with known pixels; the real shared copy is
read only by the `data`-marked test.
"""

import hashlib
import io
import os
import pickle
import re
import shutil
import struct
import tarfile
import zipfile

import keras
import numpy as np
import pytest
from PIL import Image

from sepconv.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, Cifar10, load_cifar10
from sepconv.data import _cache, _load

CLASSES = ("cat", "dog", "frog")  # sorted, so labels 0, 1, 2
PER_CLASS = {"train": 3, "test": 2}


# --- building synthetic copies -------------------------------------------------------


def _pixels(split, label, k):
    """A distinct, reproducible 32x32 RGB image."""
    seed = {"train": 0, "test": 1}[split] * 1000 + label * 10 + k
    return np.random.default_rng(seed).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


def _expected(split):
    """Images and labels in the documented order: by label, then file name."""
    x = [_pixels(split, c, k) for c in range(len(CLASSES)) for k in range(PER_CLASS[split])]
    y = [c for c in range(len(CLASSES)) for _ in range(PER_CLASS[split])]
    return np.stack(x), np.array(y, dtype=np.int64)


def _encode(pixels, fmt):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _image_files(fmt="PNG", top=""):
    """`{relative path: bytes}` of an image-folder copy; file names sort in k order."""
    ext = {"PNG": "png", "JPEG": "jpg"}[fmt]
    files = {}
    for split, count in PER_CLASS.items():
        for label, name in enumerate(CLASSES):
            for k in range(count):
                files[f"{top}{split}/{name}/{k:04d}.{ext}"] = _encode(_pixels(split, label, k), fmt)
    return files


def _write_folder(root, files):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _write_tar(path, files, mode="w:gz"):
    with tarfile.open(path, mode) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _write_zip(path, files):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def _official_files(top="cifar-10-batches-py/"):
    """The python release's files, pickled as Python 2 wrote them (numpy 1 module names)."""

    def batch(images, labels):
        content = {
            b"batch_label": b"synthetic",
            b"labels": [int(v) for v in labels],
            b"data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072),
            b"filenames": [b"img_%d.png" % i for i in range(len(images))],
        }
        return _py2_pickle(content)

    x_train, y_train, x_test, y_test = _official_arrays()
    files = {}
    for i in range(5):  # two images per training batch
        files[f"{top}data_batch_{i + 1}"] = batch(x_train[2 * i : 2 * i + 2], y_train[2 * i : 2 * i + 2])
    files[f"{top}test_batch"] = batch(x_test, y_test)
    meta = {b"label_names": [name.encode() for name in CIFAR10_CLASSES], b"num_vis": 3072}
    files[f"{top}batches.meta"] = _py2_pickle(meta)
    return files


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` opcodes (BINSTRING), as the real release does."""

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, bytes: save_bytes}


def _py2_pickle(obj):
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def _official_arrays():
    rng = np.random.default_rng(7)
    x_train = rng.integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    return x_train, np.arange(10, dtype=np.int64) % 10, x_test, np.array([9, 0, 4], dtype=np.int64)


def _read(path, tmp_path, **kwargs):
    return load_cifar10(path, cache_dir=tmp_path / "cache", progress=False, **kwargs)


@pytest.fixture(autouse=True)
def _no_ambient_sources(monkeypatch, tmp_path):
    """Keep the user's SEPCONV_DATA, caches and keras downloads out of these tests."""
    monkeypatch.delenv("SEPCONV_DATA", raising=False)
    monkeypatch.setenv("SEPCONV_CACHE", str(tmp_path / "default-cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))


def _assert_matches(data, x_train, y_train, x_test, y_test):
    assert data.x_train.dtype == np.uint8 and data.x_test.dtype == np.uint8
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    np.testing.assert_array_equal(data.x_train, x_train)
    np.testing.assert_array_equal(data.y_train, y_train)
    np.testing.assert_array_equal(data.x_test, x_test)
    np.testing.assert_array_equal(data.y_test, y_test)


# --- formats -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "container, top",
    [("folder", ""), ("folder", "cifar10/"), ("tar.gz", ""), ("tar.gz", "cifar10/"), ("tar", "./"), ("zip", "cifar10/")],
)
def test_image_folder_formats_give_exact_pixels_and_sorted_labels(tmp_path, container, top):
    files = _image_files("PNG", top)
    path = {
        "folder": lambda: _write_folder(tmp_path / "copy", files),
        "tar.gz": lambda: _write_tar(tmp_path / "copy.tgz", files),
        "tar": lambda: _write_tar(tmp_path / "copy.tar", files, mode="w"),
        "zip": lambda: _write_zip(tmp_path / "copy.zip", files),
    }[container]()
    data = _read(path, tmp_path)
    _assert_matches(data, *_expected("train"), *_expected("test"))
    assert data.class_names == CLASSES
    assert data.source == f"image-folder PNG copy at {path} ({container})"


def test_archive_member_order_does_not_change_the_arrays(tmp_path):
    files = _image_files("PNG")
    shuffled = dict(reversed(list(files.items())))
    data = _read(_write_tar(tmp_path / "reversed.tar.gz", shuffled), tmp_path)
    _assert_matches(data, *_expected("train"), *_expected("test"))


def test_jpeg_folder_decodes_close_to_the_source_pixels(tmp_path):
    flat = {}  # flat colours survive JPEG almost unchanged
    for split in PER_CLASS:
        for label, name in enumerate(CLASSES):
            colour = np.array([40 + 80 * label, 200 - 60 * label, 100], dtype=np.uint8)
            flat[f"{split}/{name}/0000.jpg"] = _encode(np.broadcast_to(colour, (32, 32, 3)).copy(), "JPEG")
    data = _read(_write_zip(tmp_path / "jpeg.zip", flat), tmp_path)
    assert data.source.startswith("image-folder JPEG copy at ")
    expected = np.array([[40 + 80 * c, 200 - 60 * c, 100] for c in range(3)], dtype=float)
    np.testing.assert_allclose(data.x_train.mean(axis=(1, 2)), expected, atol=3)
    np.testing.assert_array_equal(data.y_train, [0, 1, 2])


def test_grayscale_images_become_rgb(tmp_path):
    files = _image_files("PNG")
    gray = np.full((32, 32), 77, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG")
    files["train/cat/0000.png"] = buffer.getvalue()
    data = _read(_write_folder(tmp_path / "copy", files), tmp_path)
    np.testing.assert_array_equal(data.x_train[0], np.full((32, 32, 3), 77))


@pytest.mark.parametrize("packed", [True, False], ids=["tarball", "folder"])
def test_official_python_release(tmp_path, packed):
    files = _official_files()
    if packed:
        path = _write_tar(tmp_path / "cifar-10-python.tar.gz", files)
    else:
        path = _write_folder(tmp_path, files) / "cifar-10-batches-py"
    data = _read(path, tmp_path)
    _assert_matches(data, *_official_arrays())
    assert data.class_names == CIFAR10_CLASSES
    assert data.source == f"official python-pickle batches at {path} ({'tar.gz' if packed else 'folder'})"


def test_official_release_refuses_pickled_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    files = _official_files(top="")
    files["data_batch_3"] = _py2_pickle({b"data": Payload()})
    path = _write_tar(tmp_path / "evil.tar.gz", files)
    message = (
        "cannot read batch file 'data_batch_3' (refusing to load global '__builtin__.print'). "
        f"Received: source={str(path)!r}"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        _read(path, tmp_path)


def test_official_release_missing_batch(tmp_path):
    files = _official_files()
    del files["cifar-10-batches-py/test_batch"]
    path = _write_tar(tmp_path / "partial.tar.gz", files)
    with pytest.raises(ValueError, match=r"^missing split 'test_batch': .* Received: source='.*partial\.tar\.gz'$"):
        _read(path, tmp_path)


# --- sources -------------------------------------------------------------------------


def test_source_argument_wins_over_environment(tmp_path, monkeypatch):
    other = _write_tar(tmp_path / "other.tar.gz", _official_files())
    monkeypatch.setenv("SEPCONV_DATA", str(other))
    path = _write_zip(tmp_path / "copy.zip", _image_files())
    assert _read(path, tmp_path).class_names == CLASSES
    monkeypatch.setattr(_load, "_download", _unreachable)
    assert load_cifar10(cache_dir=tmp_path / "cache", progress=False).class_names == CIFAR10_CLASSES


def test_keras_datasets_cache_is_used_before_downloading(tmp_path, monkeypatch):
    keras_copy = tmp_path / "keras-home" / "datasets" / "cifar-10-batches-py-target"
    _write_folder(keras_copy, _official_files())
    monkeypatch.setattr(_load, "_download", _unreachable)
    data = load_cifar10(cache_dir=tmp_path / "cache", progress=False)
    _assert_matches(data, *_official_arrays())
    assert data.source.endswith("cifar-10-batches-py-target/cifar-10-batches-py (folder, keras.datasets cache)")


def test_download_result_is_converted_to_nhwc_int64(tmp_path, monkeypatch):
    x_train, y_train, x_test, y_test = _official_arrays()

    def fake_load_data():  # what keras returns under image_data_format="channels_first"
        nchw = (x_train.transpose(0, 3, 1, 2), y_train.astype(np.uint8)[:, None])
        return nchw, (x_test.transpose(0, 3, 1, 2), y_test.astype(np.uint8)[:, None])

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", fake_load_data)
    data = load_cifar10(cache_dir=tmp_path / "cache", progress=False)
    _assert_matches(data, x_train, y_train, x_test, y_test)
    assert data.source == "keras.datasets (official)"
    assert data.x_train.flags.c_contiguous


def test_offline_without_a_copy_says_how_to_point_at_one(tmp_path, monkeypatch):
    def offline():
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/: None -- [Errno -3]")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    pattern = (
        r"^CIFAR-10 was not found locally and the download failed \(URL fetch failure .*\); "
        r"pass source=PATH to a copy or set SEPCONV_DATA\. Received: source=None$"
    )
    with pytest.raises(FileNotFoundError, match=pattern):
        load_cifar10(cache_dir=tmp_path / "cache", progress=False)


def test_missing_paths(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.tar.gz"
    message = f"CIFAR-10 source does not exist. Received: source={str(missing)!r}"
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}$"):
        _read(missing, tmp_path)
    monkeypatch.setenv("SEPCONV_DATA", str(missing))
    with pytest.raises(FileNotFoundError, match=r"Received: SEPCONV_DATA='.*nowhere\.tar\.gz'$"):
        load_cifar10(progress=False)


def test_source_must_be_a_path(tmp_path):
    with pytest.raises(TypeError, match=r"^source must be a path or None\. Received: source=3$"):
        _read(3, tmp_path)


def _unreachable():
    raise AssertionError("must not be reached")


# --- safety --------------------------------------------------------------------------


def _tar_with(path, info, data=b""):
    files = _image_files()
    with tarfile.open(path, "w:gz") as archive:
        for name, content in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(content)
            archive.addfile(member, io.BytesIO(content))
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def _info(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize(
    "info, reason",
    [
        (_info("/etc/evil.png"), "absolute path"),
        (_info("train/cat/../../../evil.png"), "'..' path component"),
        (_info("train/cat/link.png", tarfile.SYMTYPE, "/etc/passwd"), "link"),
        (_info("train/cat/hard.png", tarfile.LNKTYPE, "train/cat/0000.png"), "link"),
        (_info("train/cat/dev.png", tarfile.CHRTYPE), "device, fifo or special file"),
    ],
    ids=["absolute", "dotdot", "symlink", "hardlink", "device"],
)
def test_unsafe_tar_members_are_refused(tmp_path, info, reason):
    path = _tar_with(tmp_path / "evil.tar.gz", info, b"x" if info.type == tarfile.REGTYPE else b"")
    message = f"unsafe archive member {info.name!r}: {reason}. Received: source={str(path)!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        _read(path, tmp_path)
    assert not (tmp_path / "evil.png").exists() and not os.path.exists("/etc/evil.png")


@pytest.mark.parametrize(
    "name, mode, reason",
    [
        ("../evil.png", 0o100644, "'..' path component"),
        ("/abs/evil.png", 0o100644, "absolute path"),
        ("train/cat/link.png", 0o120777, "link"),
    ],
    ids=["dotdot", "absolute", "symlink"],
)
def test_unsafe_zip_members_are_refused(tmp_path, name, mode, reason):
    path = _write_zip(tmp_path / "evil.zip", _image_files())
    with zipfile.ZipFile(path, "a") as archive:
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        archive.writestr(info, b"/etc/passwd")
    message = f"unsafe archive member {name!r}: {reason}. Received: source={str(path)!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        _read(path, tmp_path)


def test_symlink_in_folder_is_refused(tmp_path):
    root = _write_folder(tmp_path / "copy", _image_files())
    os.symlink("/etc/passwd", root / "train" / "cat" / "9999.png")
    with pytest.raises(ValueError, match=r"^unsafe folder entry 'train/cat/9999\.png': link\. Received: source="):
        _read(root, tmp_path)


def test_hidden_and_macos_entries_are_ignored(tmp_path):
    files = _image_files()
    files["train/cat/.DS_Store"] = b"junk"
    files["__MACOSX/train/cat/._0000.png"] = b"junk"
    data = _read(_write_zip(tmp_path / "mac.zip", files), tmp_path)
    _assert_matches(data, *_expected("train"), *_expected("test"))


# --- damaged or misshapen copies -----------------------------------------------------


def test_truncated_gzip(tmp_path):
    path = _write_tar(tmp_path / "cut.tar.gz", _image_files())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    pattern = r"^cannot read archive, it is truncated or corrupt \(.+\)\. Received: source='.*cut\.tar\.gz'$"
    with pytest.raises(ValueError, match=pattern):
        _read(path, tmp_path)


def test_truncated_zip(tmp_path):
    path = _write_zip(tmp_path / "cut.zip", _image_files())
    path.write_bytes(path.read_bytes()[:-30])
    pattern = r"^cannot read archive, it is truncated or corrupt \(.+\)\. Received: source='.*cut\.zip'$"
    with pytest.raises(ValueError, match=pattern):
        _read(path, tmp_path)


def test_file_that_is_no_archive(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a dataset")
    pattern = r"^source is not a folder, tar or zip archive .* Received: source='.*notes\.txt'$"
    with pytest.raises(ValueError, match=pattern):
        _read(path, tmp_path)


def test_corrupt_image_names_the_member(tmp_path):
    files = _image_files()
    files["train/dog/0001.png"] = b"\x89PNG\r\n\x1a\n garbage"
    path = _write_tar(tmp_path / "bad.tar.gz", files)
    pattern = r"^cannot decode image 'train/dog/0001\.png' \(.+\)\. Received: source='.*bad\.tar\.gz'$"
    with pytest.raises(ValueError, match=pattern):
        _read(path, tmp_path)


def test_wrong_image_size_names_the_member(tmp_path):
    files = _image_files()
    files["test/frog/0000.png"] = _encode(np.zeros((16, 24, 3), np.uint8), "PNG")
    with pytest.raises(ValueError, match=r"^image 'test/frog/0000\.png' is 24x16, expected 32x32\. Received: source="):
        _read(_write_zip(tmp_path / "small.zip", files), tmp_path)


def test_missing_split(tmp_path):
    files = {k: v for k, v in _image_files(top="copy/").items() if not k.startswith("copy/test/")}
    message = "missing split 'test': expected folders train/ and test/ with one folder per class."
    with pytest.raises(ValueError, match=f"^{re.escape(message)} Received: source="):
        _read(_write_tar(tmp_path / "train-only.tar.gz", files), tmp_path)


def test_class_folders_differ_between_splits(tmp_path):
    files = _image_files()
    files = {k.replace("test/frog/", "test/toad/"): v for k, v in files.items()}
    message = "class folders differ between train and test (only in train: ['frog'], only in test: ['toad'])."
    with pytest.raises(ValueError, match=f"^{re.escape(message)} Received: source="):
        _read(_write_zip(tmp_path / "mismatch.zip", files), tmp_path)


def test_empty_class_folder(tmp_path):
    root = _write_folder(tmp_path / "copy", _image_files())
    (root / "train" / "eel").mkdir()
    (root / "test" / "eel").mkdir()
    with pytest.raises(ValueError, match=r"^class folder 'train/eel' has no images\. Received: source="):
        _read(root, tmp_path)


def test_file_at_the_wrong_depth(tmp_path):
    files = _image_files()
    files["train/cat/extra/0000.png"] = files["train/cat/0000.png"]
    pattern = r"^unexpected file 'train/cat/extra/0000\.png': expected train/<class>/<image>\. Received: source="
    with pytest.raises(ValueError, match=pattern):
        _read(_write_zip(tmp_path / "deep.zip", files), tmp_path)


def test_unrecognised_layout(tmp_path):
    files = {f"val/cat/{k}.png": v for k, v in enumerate(_image_files().values())}
    files["README"] = b"hello"
    with pytest.raises(ValueError, match=r"^no CIFAR-10 layout found: expected train/ and test/ class folders"):
        _read(_write_zip(tmp_path / "val.zip", files), tmp_path)


# --- cache ---------------------------------------------------------------------------


def _count_reads(monkeypatch):
    calls = []
    original = _load.read_tree

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(_load, "read_tree", counting)
    return calls


def test_second_load_comes_from_the_cache(tmp_path, monkeypatch):
    path = _write_tar(tmp_path / "copy.tar.gz", _image_files())
    calls = _count_reads(monkeypatch)
    first = _read(path, tmp_path)
    assert len(calls) == 1
    monkeypatch.setattr(_load, "read_tree", lambda *args: pytest.fail("decoded again"))
    second = _read(path, tmp_path)
    _assert_matches(second, first.x_train, first.y_train, first.x_test, first.y_test)
    assert second.class_names == first.class_names and second.source == first.source
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert os.listdir(tmp_path / "cache") == [f"cifar10-v1-{digest}.npz"]


def test_cache_is_keyed_by_content_not_path(tmp_path, monkeypatch):
    path = _write_tar(tmp_path / "copy.tar.gz", _image_files())
    _read(path, tmp_path)
    moved = tmp_path / "renamed.bin"
    shutil.copy(path, moved)
    monkeypatch.setattr(_load, "read_tree", lambda *args: pytest.fail("decoded again"))
    assert _read(moved, tmp_path).source == f"image-folder PNG copy at {moved} (tar.gz)"


def test_default_cache_dir_comes_from_the_environment(tmp_path):
    path = _write_zip(tmp_path / "copy.zip", _image_files())
    load_cifar10(path, progress=False)
    assert len(os.listdir(tmp_path / "default-cache")) == 1


def test_changed_folder_is_decoded_again(tmp_path):
    files = _image_files()
    root = _write_folder(tmp_path / "copy", files)
    _read(root, tmp_path)
    image = root / "train" / "cat" / "0000.png"
    image.write_bytes(_encode(np.full((32, 32, 3), 5, np.uint8), "PNG"))
    os.utime(image, ns=(1, 1))
    data = _read(root, tmp_path)
    np.testing.assert_array_equal(data.x_train[0], np.full((32, 32, 3), 5))
    assert len(os.listdir(tmp_path / "cache")) == 2


def test_corrupt_cache_file_is_ignored_and_rebuilt(tmp_path, monkeypatch):
    path = _write_tar(tmp_path / "copy.tar.gz", _image_files())
    _read(path, tmp_path)
    (cached,) = (tmp_path / "cache").iterdir()
    cached.write_bytes(cached.read_bytes()[:1000])
    calls = _count_reads(monkeypatch)
    data = _read(path, tmp_path)
    assert len(calls) == 1
    _assert_matches(data, *_expected("train"), *_expected("test"))
    assert _cache.load(cached) is not None


def test_failed_cache_write_leaves_no_partial_file(tmp_path, monkeypatch):
    seen_while_writing = []

    def disk_full(f, fields):
        f.write(b"PK\x03\x04 partial")
        seen_while_writing.extend(os.listdir(tmp_path / "cache"))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_cache, "_write", disk_full)
    path = _write_zip(tmp_path / "copy.zip", _image_files())
    with pytest.warns(UserWarning, match=r"^could not write the CIFAR-10 cache .*No space left on device"):
        data = _read(path, tmp_path)
    _assert_matches(data, *_expected("train"), *_expected("test"))
    assert len(seen_while_writing) == 1 and ".tmp" in seen_while_writing[0]  # never the final name
    assert seen_while_writing[0].startswith(".")
    assert os.listdir(tmp_path / "cache") == []


def test_interrupted_cache_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def interrupted(f, fields):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(_cache, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _read(_write_zip(tmp_path / "copy.zip", _image_files()), tmp_path)
    assert os.listdir(tmp_path / "cache") == []


def test_decode_error_writes_no_cache(tmp_path):
    files = _image_files()
    files["train/dog/0001.png"] = b"not an image"
    with pytest.raises(ValueError, match="cannot decode image"):
        _read(_write_zip(tmp_path / "bad.zip", files), tmp_path)
    assert not (tmp_path / "cache").exists() or os.listdir(tmp_path / "cache") == []


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    load_cifar10(_write_zip(tmp_path / "copy.zip", _image_files()), cache_dir=tmp_path / "cache")
    captured = capsys.readouterr()
    assert captured.out == "" and "Decoding train images" in captured.err


def test_repr_is_short():
    x, y = np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2, np.int64)
    data = Cifar10(x, y, x, y, CLASSES, "test arrays")
    assert repr(data) == "Cifar10(x_train=(2, 32, 32, 3), x_test=(2, 32, 32, 3), classes=3, source='test arrays')"


# --- the real copy -------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_copy(tmp_path_factory):
    path = os.environ.get("SEPCONV_DATA")
    if not path or not os.path.exists(path):
        pytest.skip("set SEPCONV_DATA to a CIFAR-10 copy to run this test")
    cache_dir = tmp_path_factory.mktemp("cifar10-cache")
    return path, cache_dir, load_cifar10(path, cache_dir=cache_dir, progress=False)


@pytest.mark.data
def test_shared_copy_has_cifar10_shapes_and_balance(shared_copy):
    _, _, data = shared_copy
    assert data.x_train.shape == (50000, 32, 32, 3) and data.x_test.shape == (10000, 32, 32, 3)
    assert data.y_train.shape == (50000,) and data.y_test.shape == (10000,)
    assert data.class_names == CIFAR10_CLASSES
    np.testing.assert_array_equal(np.bincount(data.y_train), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(data.y_test), [1000] * 10)
    assert data.y_train.min() == 0 and data.y_train.max() == 9


@pytest.mark.data
def test_shared_copy_channel_statistics_match_the_normalization_constants(shared_copy):
    _, _, data = shared_copy
    levels = np.arange(256) / 255.0
    for channel in range(3):
        counts = np.bincount(data.x_train[..., channel].ravel(), minlength=256)
        mean = counts @ levels / counts.sum()
        std = np.sqrt(counts @ (levels - mean) ** 2 / counts.sum())
        assert abs(mean - CIFAR10_MEAN[channel]) < 0.002 and abs(std - CIFAR10_STD[channel]) < 0.002


@pytest.mark.data
def test_shared_copy_loads_from_the_cache_through_sepconv_data(shared_copy, monkeypatch):
    path, cache_dir, first = shared_copy
    monkeypatch.setenv("SEPCONV_DATA", path)
    monkeypatch.setattr(_load, "read_tree", lambda *args: pytest.fail("decoded again"))
    data = load_cifar10(cache_dir=cache_dir, progress=False)
    np.testing.assert_array_equal(data.x_test, first.x_test)
    np.testing.assert_array_equal(data.y_train, first.y_train)
    assert data.source.startswith("image-folder JPEG copy at ")
