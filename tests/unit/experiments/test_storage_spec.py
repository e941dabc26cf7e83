"""vm.disk and policy.storage in an experiment spec; the datastore's room checked before a run."""

from __future__ import annotations

import pytest

from experiments.capacity import check_datastore
from experiments.spec import parse_experiment
from ground.config import ConfigError


def spec(**vm_disk):
    return parse_experiment({"vm": {"memory": "64MiB", "disk": {"size": "1GiB", **vm_disk}},
                             "policy": {"storage": "write-blocking"}})


def test_the_disk_and_the_storage_policy_are_read():
    s = spec(allocated="256MiB", block_bytes="16KiB", workload={"write_rate_mibps": 40})
    d = s.vm.disk
    assert (d.size_bytes, d.allocated_bytes, d.block_bytes) == (2**30, 2**28, 16384)
    assert d.write_rate_mibps == 40 and s.policy.storage == "write-blocking"
    assert parse_experiment({"vm": {"memory": "64MiB"}}).vm.disk is None


def test_bad_storage_and_disk_keys_are_named():
    with pytest.raises(ConfigError, match=r"policy\.storage.*nfs"):
        parse_experiment({"policy": {"storage": "nfs"}})
    with pytest.raises(ConfigError, match=r"vm\.disk\.allocated"):
        spec(allocated="2GiB")
    with pytest.raises(ConfigError, match=r"vm\.disk\.workload\.write_rate_mibps"):
        spec(workload={"write_rate_mibps": -1})


def test_a_disk_needs_room_for_two_images_in_the_datastore():
    s = spec()
    check_datastore(s, free_bytes=2 * 2**30)
    with pytest.raises(ConfigError, match=r"vm\.disk\.size.*2GiB needed, 2047 MiB free"):
        check_datastore(s, free_bytes=2 * 2**30 - 2**20)
