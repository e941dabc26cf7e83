"""migrator.disk.datastore: where disks live, sparse creation, allocated sectors, cleanup."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ground.config import ConfigError
from migrator.disk.blocks import NEVER_WRITTEN, check_block
from migrator.disk.datastore import (
    allocated_sectors,
    create_disk,
    datastore_root,
    dirty_log_path,
    disk_path,
    leftover_disks,
    remove_disk,
    remove_empty_host_dirs,
)
from migrator.disk.params import parse_disk

BS = 65536


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("WANMIG_DATASTORE", str(tmp_path / "ds"))
    return tmp_path / "ds"


def test_root_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("WANMIG_DATASTORE", raising=False)
    assert str(datastore_root()) == "/var/tmp/wanmig-datastore"
    monkeypatch.setenv("WANMIG_DATASTORE", str(tmp_path / "x"))
    assert datastore_root() == tmp_path / "x"


def test_disk_path_checks_names(root):
    assert disk_path("h1", "vm1", "src") == root / "h1" / "wanmig-vm1-src.disk"
    assert dirty_log_path(root / "a.disk") == root / "a.disk.dirty"
    for args, key in ((("../h", "vm1", "src"), "host"), (("h1", "VM", "src"), "vm"),
                      (("h1", "vm1", "a" * 17), "tag")):
        with pytest.raises(ConfigError) as err:
            disk_path(*args)
        assert err.value.path == key


def test_created_sparse_with_exactly_the_filled_blocks_allocated(root):
    p = parse_disk({"size": "16MiB", "allocated": "3MiB"}, "vm.disk")
    path = disk_path("h1", "vm1", "src")
    create_disk(path, p, salt=5, fill=True, tracking=True)
    assert path.stat().st_size == 16 << 20
    assert path.stat().st_blocks * 512 == 3 << 20, "the unfilled part is not a hole"
    sectors = allocated_sectors(path)
    assert np.array_equal(sectors, np.arange(3 * 256, dtype=np.int64)), \
        f"allocated sectors {sectors[:3]}..{sectors[-3:]} (n={len(sectors)}), expected 0..767"
    assert dirty_log_path(path).stat().st_size == p.sectors
    with open(path, "rb") as f:
        assert check_block(f.read(BS), 0, 0) == ""
        f.seek(47 * BS)
        assert check_block(f.read(BS), 47, 0) == ""
        f.seek(48 * BS)
        assert check_block(f.read(BS), 48, NEVER_WRITTEN) == ""
    with pytest.raises(FileExistsError):
        create_disk(path, p, fill=False)


def test_allocated_sectors_sees_scattered_data_and_an_empty_disk(root):
    p = parse_disk({"size": "4MiB", "allocated": 0}, "vm.disk")
    path = disk_path("h1", "vm1", "dst")
    create_disk(path, p, fill=False)
    assert len(allocated_sectors(path)) == 0
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"x", 10 * 4096 + 5)
        os.pwrite(fd, b"y" * 8192, 100 * 4096)
        os.pwrite(fd, b"z", (1 << 22) - 1)          # the very last byte
    finally:
        os.close(fd)
    assert allocated_sectors(path).tolist() == [10, 100, 101, 1023]


def test_leftovers_listed_and_removed_with_their_host_dirs(root):
    p = parse_disk({"size": "1MiB"}, "vm.disk")
    a, b = disk_path("h1", "vm1", "src"), disk_path("h2", "vm1", "dst")
    create_disk(a, p, fill=True, tracking=True)
    create_disk(b, p, fill=False)
    (root / "h2" / "notes.txt").write_text("not ours")
    assert leftover_disks() == [a, dirty_log_path(a), b]
    for path in leftover_disks():
        remove_disk(path)
    remove_disk(a)                                   # missing is fine
    assert leftover_disks() == [] and not (root / "h1").exists()
    (root / "h2" / "notes.txt").unlink()
    assert remove_empty_host_dirs() == [root / "h2"]
    assert root.exists(), "a root named by WANMIG_DATASTORE is the user's"


def test_failed_fill_leaves_nothing(root, monkeypatch):
    import migrator.disk.datastore as ds

    def broken(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ds, "_fill", broken)
    path = disk_path("h1", "vm1", "src")
    with pytest.raises(OSError):
        create_disk(path, parse_disk({"size": "1MiB"}, "vm.disk"), fill=True, tracking=True)
    assert leftover_disks() == []
