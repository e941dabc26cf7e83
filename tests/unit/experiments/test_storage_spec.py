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


def test_a_mirrored_disk_writes_at_most_a_block_per_round_trip_in_the_model():
    from experiments.metrics import disk_inputs, prediction

    s = parse_experiment({"vm": {"memory": "256MiB",
                                 "disk": {"size": "1GiB", "workload": {"write_rate_mibps": 40}}},
                          "policy": {"storage": "write-blocking"}})   # 150 ms by default
    terms = disk_inputs(s, live=True)
    assert terms["disk_mirrored"] and terms["disk_write_Bps"] == 65536 / 0.15
    assert prediction(s)["predicted_total_time_s"] > 0      # 40 MiB/s is not refused
