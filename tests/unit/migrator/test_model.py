"""migrator.core.model: hand-computed cases of the geometric pre-copy model."""

from __future__ import annotations

import pytest

from ground.config import ConfigError
from migrator.core.model import ModelInputs, predict
from migrator.memory.workload import MIB

MB = 1_000_000


def test_no_dirtying_one_round_downtime_is_rtt():
    # 1000 MB at 100 MB/s: round 0 takes 10 s; nothing dirty -> stop, downtime = rtt = 0.15 s.
    r = predict(ModelInputs(memory_bytes=1000 * MB, bandwidth_Bps=100 * MB, rtt_s=0.15))
    assert r.rounds == 1 and r.converges
    assert r.downtime_s == pytest.approx(0.15)
    assert r.total_time_s == pytest.approx(10.15)
    assert r.bytes_on_wire == pytest.approx(1000 * MB)
    assert r.lower_bound_time_s == pytest.approx(10.15)


def test_geometric_rounds_hand_computed():
    # V0 = 1000 MB * 0.5 = 500 MB; ratio 2, bw 50 MB/s -> 100 MB/s raw.  dirty 10 MB/s, rtt 0.1.
    # r0: t=5 s, dirty 50 MB -> 0.5 + 0.1 = 0.6 > 0.3 go on
    # r1: t=0.5, dirty 5 MB  -> 0.05 + 0.1 = 0.15 <= 0.3 stop; downtime 0.15 + verify 0.05
    r = predict(ModelInputs(memory_bytes=1000 * MB, nonzero_frac=0.5, bandwidth_Bps=50 * MB,
                            compression_ratio=2.0, dirty_rate_Bps=10 * MB, rtt_s=0.1,
                            downtime_target_s=0.3, verify_s=0.05))
    assert r.rounds == 2 and r.converges
    assert r.round_bytes == pytest.approx((500 * MB, 50 * MB, 5 * MB))
    assert r.downtime_s == pytest.approx(0.2)
    assert r.total_time_s == pytest.approx(5 + 0.5 + 0.2)
    assert r.bytes_on_wire == pytest.approx(555 * MB / 2)
    assert r.lower_bound_time_s == pytest.approx(5.1)


def test_dirty_rate_at_bandwidth_does_not_converge():
    # dirty == raw send rate: every round re-sends the same 1000 MB; stop at max_rounds=5.
    r = predict(ModelInputs(memory_bytes=1000 * MB, bandwidth_Bps=100 * MB,
                            dirty_rate_Bps=100 * MB, rtt_s=0.1, max_rounds=5))
    assert not r.converges and r.rounds == 5
    assert r.downtime_s == pytest.approx(10.1)            # the whole 1000 MB paused
    assert r.total_time_s == pytest.approx(5 * 10 + 10.1)


def test_working_set_cap():
    # dirty 200 MB/s but a 20 MB working set: round 0 (10 s) leaves min(2000, 20) = 20 MB,
    # 0.2 s + rtt 0.05 = 0.25 <= 0.3 -> converges after one round despite dirty > bandwidth.
    r = predict(ModelInputs(memory_bytes=1000 * MB, bandwidth_Bps=100 * MB,
                            dirty_rate_Bps=200 * MB, working_set_bytes=20 * MB, rtt_s=0.05))
    assert r.converges and r.rounds == 1
    assert r.downtime_s == pytest.approx(0.25)
    assert r.round_bytes == pytest.approx((1000 * MB, 20 * MB))


def test_working_set_too_big_for_target_forces_stop():
    # The cap keeps 50 MB dirty forever: 0.5 s + rtt > 0.3 s each round -> max_rounds.
    r = predict(ModelInputs(memory_bytes=1000 * MB, bandwidth_Bps=100 * MB,
                            dirty_rate_Bps=200 * MB, working_set_bytes=50 * MB, max_rounds=4))
    assert not r.converges and r.rounds == 4
    assert r.downtime_s == pytest.approx(0.5)


def test_rtt_above_target_never_converges():
    r = predict(ModelInputs(memory_bytes=MB, bandwidth_Bps=MB, rtt_s=0.4, max_rounds=3))
    assert not r.converges and r.rounds == 3 and r.downtime_s == pytest.approx(0.4)


@pytest.mark.parametrize(("key", "value"), [
    ("memory_bytes", 0), ("bandwidth_Bps", -1.0), ("nonzero_frac", 1.5),
    ("compression_ratio", 0), ("max_rounds", 0), ("downtime_target_s", 0.0),
])
def test_bad_inputs_name_the_key(key, value):
    kwargs = {"memory_bytes": MB, "bandwidth_Bps": MB, key: value}
    with pytest.raises(ConfigError) as info:
        ModelInputs(**kwargs)
    assert info.value.path == f"model.{key}"


# --- a VM with a disk (migrator.core.disk) -------------------------------------------------------

def _disk_case(**kw):
    base = dict(memory_bytes=256 * MIB, bandwidth_Bps=30e6, dirty_rate_Bps=10 * MIB,
                working_set_bytes=64 * MIB, rtt_s=0.15, disk_bytes=512 * MIB,
                disk_dirty_rate_Bps=10 * MIB, disk_working_set_bytes=100 * MIB)
    return predict(ModelInputs(**{**base, **kw}))


def test_disk_adds_its_bulk_to_round_zero_and_its_writes_to_later_rounds():
    res = _disk_case()
    assert res.round_bytes[0] == 768 * MIB
    t0 = 768 * MIB / 30e6
    assert res.round_bytes[1] == pytest.approx(min(10 * MIB * t0, 64 * MIB)
                                               + min(10 * MIB * t0, 100 * MIB))
    assert res.lower_bound_time_s == pytest.approx(t0 + 0.15)
    assert res.total_time_s > res.lower_bound_time_s


def test_a_mirrored_disk_goes_once_and_its_writes_take_bandwidth():
    res = _disk_case(disk_mirrored=True, disk_write_Bps=5e6)
    t0 = 768 * MIB / 25e6
    assert res.round_bytes[0] == 768 * MIB
    assert res.round_bytes[1] == pytest.approx(min(10 * MIB * t0, 64 * MIB)), \
        "a mirrored disk is never re-sent"
    assert res.lower_bound_time_s == pytest.approx(t0 + 0.15)


def test_a_mirror_faster_than_the_link_is_refused():
    with pytest.raises(ConfigError, match="disk_write_Bps"):
        _disk_case(disk_mirrored=True, disk_write_Bps=40e6)
