"""The testbed's own load: which part a process is, and whether a run was testbed-bound."""

from __future__ import annotations

import pytest

from experiments.bench.harness import Bench, at_least
from experiments.load.bound import Sample, judge, migration_window, warning
from experiments.load.parts import PARTS, classify


@pytest.mark.parametrize(("comm", "cmdline", "part"), [
    ("ovs-vswitchd", "ovs-vswitchd unix:/var/run/openvswitch/db.sock", "switch"),
    ("wanmig-delaylin", "/v/libexec/wanmig/wanmig-delayline-0a --if-a wl1-eth0", "delaylines"),
    ("python", "/v/bin/python -m controller.run --port 6653", "controller"),
    ("python", "/v/bin/python -m controller.ctlproxy --listen 6700", "controller"),
    ("python", "/v/bin/python -m wanmig.cli migrate-source --connect 10.2.1.1:7000", "migrators"),
    ("python", "/v/bin/python -m wanmig.cli migrate-dest --listen 10.2.1.1:7000", "migrators"),
    ("qemu-system-x86", "qemu-system-x86_64 -accel tcg -m 256", "migrators"),
    ("python", "/v/bin/python -m migrator.guest.process --vm vm1", "guests"),
    ("python", "/v/bin/python -m experiments.clients --target 10.1.9.1", "clients"),
    ("iperf3", "iperf3 -c 10.2.1.1", "preflight"),
    ("ping", "ping -c 20 10.2.1.1", "preflight"),
    ("sshd", "sshd: /usr/sbin/sshd -D", "other"),
    ("python", "python -c 'mapping = 1'", "other"),      # "ping" inside a word is no ping
])
def test_a_process_is_the_part_its_program_says(comm, cmdline, part):
    assert classify(comm, cmdline, pid=100, runner_pid=1) == part
    assert part in PARTS


def test_the_runner_itself_is_the_runner_whatever_it_runs():
    assert classify("python", "python -m wanmig.cli run", pid=7, runner_pid=7) == "runner"


def samples(idles: list[float], t0: float = 100.0, parts: dict | None = None) -> list[Sample]:
    return [Sample(t0 + i, t0 + i + 1, idle, dict(parts or {"switch": 0.5}))
            for i, idle in enumerate(idles)]


def test_a_machine_with_cores_to_spare_is_not_bound():
    f = judge(samples([1.2, 0.9, 1.0, 1.4]), 100.0, 104.0, cores=2)
    assert f["testbed_bound"] is False
    assert f["testbed_cpu_idle_min"] == pytest.approx(0.45)
    assert f["testbed_bound_share"] == 0.0
    assert f["testbed_cpu"] == {"switch": 0.5}


def test_below_a_tenth_of_the_cores_for_more_than_a_fifth_of_the_window_is_bound():
    # 2 cores: the floor is 0.2 idle cores. One second in four below it: 25 % > 20 %.
    f = judge(samples([1.0, 0.1, 1.0, 1.0]), 100.0, 104.0, cores=2)
    assert f["testbed_bound"] is True
    assert f["testbed_bound_share"] == pytest.approx(0.25)
    assert f["testbed_cpu_idle_min"] == pytest.approx(0.05)


def test_a_fifth_exactly_is_not_more_than_a_fifth():
    f = judge(samples([0.1, 1.0, 1.0, 1.0, 1.0]), 100.0, 105.0, cores=2)
    assert f["testbed_bound_share"] == pytest.approx(0.2)
    assert f["testbed_bound"] is False


def test_samples_count_by_how_much_of_them_lies_in_the_window():
    # Window 100.5 to 102.5: half of the saturated first second, all of the second, half of
    # the third (idle): 1.5 s of 2 s below the floor.
    f = judge(samples([0.0, 0.0, 1.5]), 100.5, 102.5, cores=2)
    assert f["testbed_bound_share"] == pytest.approx(0.75)
    assert f["testbed_bound"] is True


def test_samples_outside_the_window_do_not_count():
    f = judge(samples([0.0, 0.0, 1.5, 1.5]), 102.0, 104.0, cores=2)
    assert f["testbed_bound"] is False and f["testbed_cpu_idle_min"] == pytest.approx(0.75)


def test_no_sample_in_the_window_says_unknown_not_clear():
    f = judge(samples([1.0]), 200.0, 201.0, cores=2)
    assert f["testbed_bound"] is None and f["testbed_cpu_idle_min"] is None


def test_parts_are_averaged_over_the_window():
    s = [Sample(0, 1, 1.0, {"switch": 0.2, "migrators": 0.4}),
         Sample(1, 2, 1.0, {"switch": 0.6, "migrators": 0.0})]
    f = judge(s, 0.0, 2.0, cores=2)
    assert f["testbed_cpu"] == pytest.approx({"switch": 0.4, "migrators": 0.2})


@pytest.mark.parametrize(("times", "window"), [
    ({"migration_start_t": 10.0, "rounds_start_t": 11.0, "resumed_t": 15.0}, (10.0, 15.0)),
    ({"rounds_start_t": 11.0, "resumed_t": 15.0}, (11.0, 15.0)),
    ({"migration_start_t": 10.0}, (10.0, 99.0)),            # never resumed: to the last sample
    ({"fleet_start_t": 5.0, "fleet_end_t": 50.0, "resumed_t": 7.0}, (5.0, 50.0)),
    ({}, None),
    ({"migration_start_t": 10.0, "resumed_t": 9.0}, None),
])
def test_the_migration_window_from_a_runs_times(times, window):
    assert migration_window(times, last_t=99.0) == window


def test_a_bound_run_leads_its_report_with_a_warning_naming_the_busiest_parts():
    f = judge([Sample(0, 1, 0.0, {"switch": 0.9, "delaylines": 0.5, "migrators": 0.6,
                                  "guests": 0.1})], 0.0, 1.0, cores=2)
    text = warning(f)
    assert text is not None and text.startswith("**Testbed-bound**")
    assert "switch 0.90" in text and "migrators 0.60" in text and "guests" not in text
    assert warning(judge(samples([1.5]), 100.0, 101.0, cores=2)) is None


def test_a_verdict_on_a_testbed_bound_row_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("WANMIG_RESULTS", str(tmp_path))
    bench = Bench("loadtest", "load test", argv=[])
    bench.add({"testbed_bound": True}, at_least("goodput", 95.0, 90.0, unit=" %"))
    bench.add({"testbed_bound": False}, at_least("goodput", 80.0, 90.0, unit=" %"))
    first, second = bench.verdicts
    assert first.testbed_bound and first.cell().endswith("[testbed-bound]"), first.cell()
    assert not second.testbed_bound and "testbed-bound" not in second.cell()
    bench.finish("table")
    assert "1 taken on testbed-bound runs" in (bench.out / "table.md").read_text()
