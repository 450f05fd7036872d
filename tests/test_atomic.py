"""Atomic writes leave the old file or the new one, never a partial one."""

import os

import pytest

from sepconv._atomic import atomic_path, write_bytes, write_text


def test_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "old")
    write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_failed_write_keeps_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(path) as temp:
            with open(temp, "w") as f:
                f.write("half")
            raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_written_files_follow_umask_not_private(tmp_path):
    previous = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
