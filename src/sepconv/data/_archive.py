"""Read every file of a folder, tar or zip archive into memory, refusing unsafe entries.

Nothing is ever extracted to disk: members are read as bytes, so an archive cannot write
outside its folder. Members with absolute paths, `..` components, links, devices or fifos
are refused outright rather than skipped, because a CIFAR-10 copy never contains them.
Hidden entries (a path component starting with `.`) and macOS `__MACOSX` folders are
ignored. Every error is one line naming the offending member and the source.
"""

import dataclasses
import lzma
import os
import re
import stat
import tarfile
import zipfile
import zlib

# Leading bytes of the compressed containers; anything else must be a plain tar.
_MAGIC = (
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"\x1f\x8b", "tar.gz"),
    (b"BZh", "tar.bz2"),
    (b"\xfd7zXZ\x00", "tar.xz"),
)
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError)


@dataclasses.dataclass(frozen=True)
class Tree:
    """The regular files of a source, by POSIX relative path, and its directory names."""

    path: str
    container: str  # "folder", "tar", "tar.gz", "tar.bz2", "tar.xz" or "zip"
    files: dict  # relative path -> bytes
    dirs: frozenset  # every directory, explicit or implied by a file path


def container_of(path):
    """Names the container of `path` from its leading bytes, not its extension."""
    if os.path.isdir(path):
        return "folder"
    with open(path, "rb") as f:
        head = f.read(512)
    for magic, container in _MAGIC:
        if head.startswith(magic):
            return container
    if head[257:262] == b"ustar":
        return "tar"
    raise ValueError(
        "source is not a folder, tar or zip archive (expected cifar-10-python.tar.gz, "
        f"a folder, .tar, .tar.gz, .tgz or .zip). Received: source={path!r}"
    )


def read_tree(path, bar):
    """Reads `path` (a folder, tar in any compression, or zip) into a `Tree`.

    `bar` is a progress bar from `_load_progress.progress_bar`.
    """
    container = container_of(path)
    files, dirs = {}, set()
    if container == "folder":
        _read_folder(path, files, dirs, bar)
    else:
        try:
            if container == "zip":
                _read_zip(path, files, dirs, bar)
            else:
                _read_tar(path, files, dirs, bar)
        except _READ_ERRORS as err:
            reason = " ".join(str(err).split()) or type(err).__name__
            raise ValueError(
                f"cannot read archive, it is truncated or corrupt ({reason}). Received: source={path!r}"
            ) from None
    for name in files:
        parts = name.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return Tree(path=path, container=container, files=files, dirs=frozenset(dirs))


def _member_name(name, source):
    """The normalized relative path of an archive member, or None to ignore it."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"[A-Za-z]:", posix):
        raise ValueError(f"unsafe archive member {name!r}: absolute path. Received: source={source!r}")
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(
            f"unsafe archive member {name!r}: '..' path component. Received: source={source!r}"
        )
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    return "/".join(parts)


def _add(files, name, data, source):
    if name in files:
        raise ValueError(f"duplicate archive member {name!r}. Received: source={source!r}")
    files[name] = data


def _read_tar(path, files, dirs, bar):
    task = bar.add_task(f"Reading {os.path.basename(path)}", total=os.path.getsize(path))
    with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as archive:
        for count, member in enumerate(archive):
            name = _member_name(member.name, path)
            if name is None or name == "":
                continue
            if member.isdir():
                dirs.add(name)
            elif member.isfile():
                _add(files, name, archive.extractfile(member).read(), path)
            else:
                kind = "link" if (member.issym() or member.islnk()) else "device, fifo or special file"
                raise ValueError(
                    f"unsafe archive member {member.name!r}: {kind}. Received: source={path!r}"
                )
            if count % 1000 == 0:
                bar.update(task, completed=raw.tell())
        bar.update(task, completed=os.path.getsize(path))


def _read_zip(path, files, dirs, bar):
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        task = bar.add_task(f"Reading {os.path.basename(path)}", total=len(infos))
        for count, info in enumerate(infos):
            name = _member_name(info.filename, path)
            if name is None or name == "":
                continue
            kind = stat.S_IFMT(info.external_attr >> 16)
            if info.is_dir():
                dirs.add(name)
            elif kind in (0, stat.S_IFREG):
                _add(files, name, archive.read(info), path)
            else:
                what = "link" if kind == stat.S_IFLNK else "device, fifo or special file"
                raise ValueError(
                    f"unsafe archive member {info.filename!r}: {what}. Received: source={path!r}"
                )
            if count % 1000 == 0:
                bar.update(task, completed=count)
        bar.update(task, completed=len(infos))


def walk_folder(path):
    """Yields `(relative path, os.stat_result)` of every visible entry, sorted.

    Links and special files are refused: a dataset folder holds only folders and files.
    """
    for top, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for entry in dirnames + sorted(f for f in filenames if not f.startswith(".")):
            full = os.path.join(top, entry)
            rel = os.path.relpath(full, path).replace(os.sep, "/")
            info = os.lstat(full)
            if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
                what = "link" if stat.S_ISLNK(info.st_mode) else "device, fifo or special file"
                raise ValueError(f"unsafe folder entry {rel!r}: {what}. Received: source={path!r}")
            yield rel, info


def _read_folder(path, files, dirs, bar):
    entries = list(walk_folder(path))
    task = bar.add_task(f"Reading {os.path.basename(path)}", total=len(entries))
    for count, (rel, info) in enumerate(entries):
        if stat.S_ISDIR(info.st_mode):
            dirs.add(rel)
        else:
            with open(os.path.join(path, rel), "rb") as f:
                files[rel] = f.read()
        if count % 1000 == 0:
            bar.update(task, completed=count)
    bar.update(task, completed=len(entries))
