"""migrator.guest.image: named /dev/shm images, shared between mappings, refused twice, cleaned."""

from __future__ import annotations

import secrets

import numpy as np
import pytest

from ground.config import ConfigError
from migrator.guest.image import GuestMemory, leftover_segments, remove_segments
from migrator.memory.pages import PAGE_SIZE


@pytest.fixture
def vm():
    name = "t" + secrets.token_hex(5)
    yield name
    remove_segments([s for s in leftover_segments() if s.startswith(f"wanmig-{name}-")])


def test_create_attach_share_and_unlink(vm):
    mem = GuestMemory.create(vm, "src", 16, tracking=True)
    try:
        assert mem.name == f"wanmig-{vm}-src" and mem.npages == 16
        assert mem.pages.shape == (16, PAGE_SIZE) and mem.pages.dtype == np.uint8
        assert not mem.pages.any(), "a new image must be all zero"
        assert mem.dirty is not None and mem.control is not None
        other = GuestMemory.attach(vm, "src")
        try:
            other.pages[3, 10] = 77
            assert mem.pages[3, 10] == 77, "two mappings of one image must share the bytes"
            assert other.tracking and other.npages == 16
        finally:
            other.close()
        names = {f"wanmig-{vm}-src.ram", f"wanmig-{vm}-src.dirty", f"wanmig-{vm}-src.ctl"}
        assert names <= set(leftover_segments())
    finally:
        mem.close()
        mem.unlink()
    assert not any(s.startswith(f"wanmig-{vm}-") for s in leftover_segments())
    with pytest.raises(ValueError, match="closed"):
        _ = mem.pages


def test_untracked_image_has_only_ram(vm):
    with GuestMemory.create(vm, "dst", 4, tracking=False) as mem:
        assert mem.dirty is None and mem.control is None and not mem.tracking
        assert [p.name for p in mem.segment_paths()] == [f"wanmig-{vm}-dst.ram"]
        mem.unlink()


def test_create_twice_is_refused_and_keeps_the_first(vm):
    with GuestMemory.create(vm, "src", 4, tracking=True) as mem:
        mem.pages[0, 0] = 9
        with pytest.raises(FileExistsError, match="wanmig clean"):
            GuestMemory.create(vm, "src", 4, tracking=False)
        assert GuestMemory.exists(vm, "src") and mem.pages[0, 0] == 9
        mem.unlink()


@pytest.mark.parametrize(("args", "path"), [
    (("Vm1", "src", 4), "vm"), (("vm1", "a-b", 4), "tag"), (("x" * 17, "src", 4), "vm"),
    (("vm1", "src", 0), "npages"), (("vm1", "src", 2.5), "npages"),
])
def test_bad_arguments_name_the_argument(args, path):
    with pytest.raises(ConfigError) as info:
        GuestMemory.create(*args, tracking=False)
    assert info.value.path == path


def test_attach_missing_names_the_file(vm):
    with pytest.raises(FileNotFoundError, match=f"wanmig-{vm}-nope"):
        GuestMemory.attach(vm, "nope")


def test_remove_segments_refuses_foreign_names():
    for bad in ("passwd", "../wanmig-x-y.ram", "wanmig-x-y.txt"):
        with pytest.raises(ValueError, match="not a wanmig segment"):
            remove_segments([bad])
    assert remove_segments(["wanmig-zz9nothere-src.ram"]) == []
