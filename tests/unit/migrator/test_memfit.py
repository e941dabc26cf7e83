"""migrator.memfit: a VM's memory against what this machine holds; both images, the caches and
the processes counted, the limit said in the error."""

from __future__ import annotations

import pytest

from ground.config import ConfigError
from migrator.core.policy import MigrationPolicy
from migrator.memfit import (
    CONTROL_BYTES,
    GIB,
    MIB,
    PROCESS_HEADROOM,
    Footprint,
    HostMemory,
    check_fits,
    footprint,
    mem_available,
    read_host_memory,
    shm_free,
)
from migrator.memory.pages import PAGE_SIZE

MACHINE = HostMemory(available_bytes=23 * GIB, shm_free_bytes=24 * GIB)


def test_need_counts_both_images_dirty_log_control_caches_and_processes():
    fp = Footprint(images=2, in_shm=True, cache_bytes=64 * MIB, headroom_bytes=PROCESS_HEADROOM)
    need = fp.need(1 * GIB)
    images = 2 * GIB + GIB // PAGE_SIZE + CONTROL_BYTES
    assert need.shm_bytes == images
    assert need.ram_bytes == images + 64 * MIB + PROCESS_HEADROOM


def test_in_process_images_count_in_ram_only():
    need = Footprint(in_shm=False).need(GIB)
    assert need.shm_bytes == 0 and need.ram_bytes > 2 * GIB


def test_15gib_on_a_23gib_machine_is_refused_naming_key_value_and_limit():
    with pytest.raises(ConfigError) as info:
        check_fits("vm.memory", "15GiB", 15 * GIB, footprint(MigrationPolicy()), MACHINE)
    err = info.value
    assert err.path == "vm.memory" and err.value == "15GiB"
    assert "at most 11.2 GiB" in str(err) and "MemAvailable is 23.0 GiB" in str(err), str(err)
    assert "2 copies" in str(err)


def test_the_largest_memory_fits_and_one_page_more_does_not():
    fp = footprint(MigrationPolicy())
    largest = fp.largest(MACHINE)
    assert largest is not None and largest % PAGE_SIZE == 0
    check_fits("vm.memory", "x", largest, fp, MACHINE)
    with pytest.raises(ConfigError):
        check_fits("vm.memory", "x", largest + PAGE_SIZE, fp, MACHINE)


def test_the_smaller_of_ram_and_shm_bounds():
    small_shm = HostMemory(available_bytes=64 * GIB, shm_free_bytes=4 * GIB, shm_dir="/dev/shm")
    fp = footprint(MigrationPolicy())
    assert fp.largest(small_shm) == pytest.approx(2 * GIB, rel=0.01)
    with pytest.raises(ConfigError) as info:
        check_fits("vm.memory", "3GiB", 3 * GIB, fp, small_shm)
    assert "/dev/shm has 4.0 GiB free" in str(info.value)
    assert "MemAvailable" not in str(info.value)


def test_xbzrle_caches_count_for_every_stream_at_both_ends():
    xb = footprint(MigrationPolicy(codec="xbzrle", streams=4, xbzrle_cache_mib=64))
    assert xb.cache_bytes == 2 * 8 * 64 * MIB          # up to 8 streams (twice the start)
    assert footprint(MigrationPolicy(codec="lz4")).cache_bytes == 0
    assert xb.largest(MACHINE) < footprint(MigrationPolicy()).largest(MACHINE)


def test_unknown_readings_are_not_checked():
    unknown = HostMemory(available_bytes=None, shm_free_bytes=None)
    check_fits("vm.memory", "16GiB", 16 * GIB, footprint(MigrationPolicy()), unknown)
    assert footprint(MigrationPolicy()).largest(unknown) is None


def test_nothing_fits_a_tiny_machine():
    tiny = HostMemory(available_bytes=100 * MIB, shm_free_bytes=None)
    assert footprint(MigrationPolicy()).largest(tiny) == 0


def test_mem_available_reads_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683584 kB\nMemAvailable:   24164160 kB\n")
    assert mem_available(str(meminfo)) == 24164160 * 1024
    meminfo.write_text("MemTotal: 1 kB\n")
    assert mem_available(str(meminfo)) is None
    assert mem_available(str(tmp_path / "missing")) is None


def test_host_readings_of_a_real_folder(tmp_path):
    host = read_host_memory(tmp_path, meminfo=str(tmp_path / "missing"))
    assert host.available_bytes is None
    assert host.shm_free_bytes is not None and host.shm_free_bytes > 0
    assert shm_free(tmp_path / "no-such-folder") is None
