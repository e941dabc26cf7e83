"""migrator.disk.params: vm.disk parsed, defaulted, refused with the key, value and expectation."""

from __future__ import annotations

import pytest

from ground.config import ConfigError
from migrator.disk.params import DiskParams, parse_disk

MIB = 1024 * 1024


def test_no_disk_is_none():
    assert parse_disk(None, "vm.disk") is None


def test_defaults_and_derived_counts():
    p = parse_disk({"size": "1GiB"}, "vm.disk")
    assert p == DiskParams(size_bytes=1 << 30, allocated_bytes=512 * MIB, block_bytes=65536,
                           write_rate_mibps=1.0, read_rate_mibps=1.0, working_set_frac=0.1,
                           skew="zipf", zipf_s=1.0, content="text")
    assert (p.sectors, p.blocks, p.allocated_blocks, p.sectors_per_block) == \
        (262144, 16384, 8192, 16)


def test_every_key_read_and_round_trips_through_to_dict():
    raw = {"size": 256 * MIB, "allocated": "64MiB", "block_bytes": 8192,
           "workload": {"write_rate_mibps": 40, "read_rate_mibps": 0, "working_set_frac": 1,
                        "skew": "uniform", "zipf_s": 1.2, "content": "random"}}
    p = parse_disk(raw, "vm.disk")
    assert (p.size_bytes, p.allocated_bytes, p.block_bytes) == (256 * MIB, 64 * MIB, 8192)
    assert (p.write_rate_mibps, p.read_rate_mibps, p.working_set_frac, p.skew, p.zipf_s,
            p.content) == (40.0, 0.0, 1.0, "uniform", 1.2, "random")
    assert parse_disk(p.to_dict(), "vm.disk") == p


def test_default_allocation_is_half_rounded_down_to_a_block():
    p = parse_disk({"size": 3 * 65536}, "vm.disk")
    assert p.allocated_bytes == 65536


@pytest.mark.parametrize(("raw", "path", "says"), [
    ({}, "vm.disk.size", "required"),
    ({"size": "1GB"}, "vm.disk.size", "'1GiB'"),
    ({"size": 65536 * 3 + 4096}, "vm.disk.size", "multiple of block_bytes (65536)"),
    ({"size": "128GiB"}, "vm.disk.size", "64 GiB"),
    ({"size": 0}, "vm.disk.size", "from 65536"),
    ({"size": "1GiB", "allocated": "2GiB"}, "vm.disk.allocated", "to size"),
    ({"size": "1GiB", "allocated": 4096}, "vm.disk.allocated", "multiple of block_bytes"),
    ({"size": "1GiB", "block_bytes": 6000}, "vm.disk.block_bytes", "multiple of 4096"),
    ({"size": "1GiB", "block_bytes": 2048}, "vm.disk.block_bytes", "from 4096 to 1048576"),
    ({"size": "1GiB", "block_bytes": 2 * MIB}, "vm.disk.block_bytes", "from 4096 to 1048576"),
    ({"size": "1GiB", "workload": {"write_rate_mibps": -1}},
     "vm.disk.workload.write_rate_mibps", "at least 0"),
    ({"size": "1GiB", "workload": {"read_rate_mibps": "fast"}},
     "vm.disk.workload.read_rate_mibps", "a number"),
    ({"size": "1GiB", "workload": {"working_set_frac": 0}},
     "vm.disk.workload.working_set_frac", "greater than 0"),
    ({"size": "1GiB", "workload": {"skew": "pareto"}}, "vm.disk.workload.skew", "uniform, zipf"),
    ({"size": "1GiB", "workload": {"content": "zeros"}}, "vm.disk.workload.content",
     "text, random"),
    ({"size": "1GiB", "workload": {"write_rate": 1}}, "vm.disk.workload.write_rate",
     "did you mean 'write_rate_mibps'"),
    ({"size": "1GiB", "sise": 1}, "vm.disk.sise", "did you mean 'size'"),
    ("1GiB", "vm.disk", "a mapping"),
])
def test_bad_input_names_the_key(raw, path, says):
    with pytest.raises(ConfigError) as err:
        parse_disk(raw, "vm.disk")
    assert err.value.path == path, str(err.value)
    assert says in str(err.value), str(err.value)
