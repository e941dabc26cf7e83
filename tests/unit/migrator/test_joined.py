"""migrator.guest.joined: two files seen as one page array, both ways, holes left alone."""

from __future__ import annotations

import os

import pytest

from migrator.guest.joined import JoinedImage
from migrator.memory.pages import PAGE_SIZE


def _file(path, pages: int):
    with open(path, "wb") as f:
        f.truncate(pages * PAGE_SIZE)
    return path


def test_writes_reach_the_right_file_and_pwrite_is_seen(tmp_path):
    a, b = _file(tmp_path / "ram", 3), _file(tmp_path / "disk", 5)
    with JoinedImage([a, b]) as img:
        assert img.pages.shape == (8, PAGE_SIZE) and img.starts == [0, 3]
        img.pages[2, :4] = [1, 2, 3, 4]
        img.pages[3, :2] = [9, 9]
        fd = os.open(b, os.O_RDWR)
        try:
            os.pwrite(fd, b"\x07" * PAGE_SIZE, 4 * PAGE_SIZE)    # disk page 4 = joined page 7
        finally:
            os.close(fd)
        assert (img.pages[7] == 7).all()
    assert a.read_bytes()[2 * PAGE_SIZE:2 * PAGE_SIZE + 4] == b"\x01\x02\x03\x04"
    assert b.read_bytes()[:2] == b"\x09\x09"


def test_reading_holes_allocates_nothing(tmp_path):
    b = _file(tmp_path / "disk", 4096)          # 16 MiB sparse
    with JoinedImage([_file(tmp_path / "ram", 1), b]) as img:
        assert not img.pages[1:].any()
    assert os.stat(b).st_blocks == 0, "reading the holes allocated blocks"


def test_a_file_of_odd_size_is_refused(tmp_path):
    odd = tmp_path / "odd"
    odd.write_bytes(b"x" * 100)
    with pytest.raises(ValueError, match="multiple of"):
        JoinedImage([odd])


def test_closed_image_refuses_use(tmp_path):
    img = JoinedImage([_file(tmp_path / "ram", 1)])
    img.close()
    img.close()
    with pytest.raises(ValueError, match="closed"):
        _ = img.pages
