"""experiments.metrics: outage, convergence and integrity from recorded probe and event files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.eventlog import read_events
from experiments.metrics import (
    METRIC_KEYS,
    Probe,
    compute_metrics,
    kv_integrity,
    longest_gap,
    move_event,
    prediction,
    probe_metrics,
)
from experiments.spec import parse_experiment
from experiments.summary import read_csv, run_table

RUN = Path(__file__).resolve().parents[2] / "fixtures" / "run_small"
VM_MAC = "02:00:0a:01:03:01"


def fixture_metrics(**overrides) -> dict:
    args = dict(probes=read_csv(RUN / "probes.csv"),
                events=read_events(RUN / "controller_events.jsonl"),
                migration=json.loads((RUN / "migration.json").read_text()),
                links=json.loads((RUN / "linkcheck.json").read_text()), vm_mac=VM_MAC,
                migration_start_t=1000.0, kv_rows=read_csv(RUN / "kv.csv"))
    args.update(overrides)
    return compute_metrics(**args)


def test_metrics_from_the_recorded_fixture():
    m = fixture_metrics()
    assert set(METRIC_KEYS) <= set(m)
    # The last reply before the pause arrives at 1001.25 (probe of 1001.1 + 150 ms); the first
    # after the resume at 1001.501 (probe of 1001.5 + 1 ms): 251 ms without a reply.
    assert m["client_outage_ms"] == pytest.approx(251.0, abs=1e-6), m
    assert m["client_outage_end_t"] == pytest.approx(1001.501)
    assert (m["probes_sent"], m["probes_lost"], m["probes_lost_migration"]) == (40, 3, 3)
    assert (m["site_before"], m["site_after"]) == ("dc1", "dc2")
    assert m["rtt_before_ms"] == pytest.approx(150.0, abs=1e-6)
    assert m["rtt_after_ms"] == pytest.approx(1.0, abs=1e-6)
    # The VM's move after the start; not its earlier move, not another MAC's.
    assert m["flow_convergence_ms"] == 12.5 and m["dest_convergence_ms"] == 3.1
    assert m["move_t"] == 1001.51
    assert m["downtime_ms"] == pytest.approx(300.0) and m["total_time_s"] == 1.5
    assert m["rounds"] == 2                        # live rounds; the stop-and-copy is not one
    assert m["mean_goodput_mbps"] == pytest.approx(18.5 * 2 ** 20 / 1.5 * 8 / 1e6)
    assert (m["link_rtt_ms_configured"], m["link_rtt_ms_measured"], m["link_bw_mbps"],
            m["link_backend"]) == (150.0, 150.4, 250.0, "delayline")
    assert m["integrity_ok"] is True and m["kv_readback"] == 3
    assert m["outcome"] == "completed"
    stored = json.loads((RUN / "metrics.json").read_text())
    for key in ("client_outage_ms", "flow_convergence_ms", "probes_lost", "integrity_ok"):
        assert stored[key] == pytest.approx(m[key]), key


def test_integrity_fails_on_a_bad_readback_or_an_unknown_digest():
    rows = read_csv(RUN / "kv.csv")
    rows[-1] = {**rows[-1], "result": "mismatch"}
    m = fixture_metrics(kv_rows=rows)
    assert m["integrity_ok"] is False and m["kv_readback_failures"] == 1
    migration = json.loads((RUN / "migration.json").read_text())
    m = fixture_metrics(migration={**migration, "integrity_ok": None}, kv_rows=None)
    assert m["integrity_ok"] is False and m["kv_integrity_ok"] is None
    assert kv_integrity([{"op": "READBACK", "result": "unverified"}])["kv_integrity_ok"] is False


def test_outage_runs_to_the_last_probe_when_no_reply_comes_back():
    probes = [Probe(i, 10.0 + i * 0.01, 10.0 + i * 0.01 + 0.002, "dc1") for i in range(50)]
    probes += [Probe(50 + i, 10.5 + i * 0.01, None, "") for i in range(100)]
    m = probe_metrics(probes, migration_start_t=10.3)
    last_reply, last_send = 10.49 + 0.002, 10.5 + 99 * 0.01
    assert m["client_outage_ms"] == pytest.approx((last_send - last_reply) * 1e3)
    assert m["site_after"] == "dc1" and m["probes_lost"] == 100


def test_gap_before_the_migration_does_not_count():
    replies = [1.0, 1.01, 3.0, 3.01, 3.02, 3.1]       # a 2 s gap long before the migration
    assert longest_gap(replies, after=3.005) == pytest.approx((0.08, 3.1))
    assert longest_gap([], after=0.0) is None
    assert longest_gap([5.0], after=0.0, end=5.5) == pytest.approx((0.5, 5.5))


def test_move_event_matches_mac_case_insensitively_and_needs_convergence():
    events = [{"event": "move", "mac": VM_MAC.upper(), "t_packet_in": 5.0,
               "flow_convergence_ms": 4.0},
              {"event": "move", "mac": VM_MAC, "t_packet_in": 4.0},      # not finished
              {"event": "learn", "mac": VM_MAC, "t_packet_in": 6.0, "flow_convergence_ms": 1}]
    assert move_event(events, VM_MAC, 3.0)["flow_convergence_ms"] == 4.0
    assert move_event(events, VM_MAC, 5.5) is None


def test_prediction_follows_the_link_and_the_model():
    spec = parse_experiment({"vm": {"memory": "64MiB", "workload": "idle"}})
    p = prediction(spec)
    goodput = 250e6 * 1448 / 1514 / 8
    # idle: almost nothing dirtied, so about one full copy plus the final round trip.
    assert p["predicted_total_time_s"] == pytest.approx(64 * 2 ** 20 / goodput + 0.15, rel=0.05)
    assert p["predicted_converges"] is True
    slow = prediction(parse_experiment({"vm": {"memory": "64MiB", "workload": "idle"},
                                        "policy": {"max_bandwidth_mbps": 50}}))
    assert slow["predicted_total_time_s"] > 4 * p["predicted_total_time_s"]
    heavy = prediction(parse_experiment({"vm": {"workload": "memory-intensive"},
                                         "policy": {"max_rounds": 5}}))
    assert heavy["predicted_converges"] is False
    unshaped = parse_experiment({"topology": {"wan": [{"bw_mbps": None}]}})
    assert prediction(unshaped)["predicted_total_time_s"] is None


def test_prediction_of_a_cold_migration_is_one_copy_all_of_it_downtime():
    spec = parse_experiment({"vm": {"memory": "64MiB", "workload": "web"},
                             "policy": {"mode": "cold"}})
    p = prediction(spec)
    goodput = 250e6 * 1448 / 1514 / 8
    assert p["predicted_total_time_s"] == pytest.approx(64 * 2 ** 20 / goodput + 0.15, rel=0.05)
    assert p["predicted_downtime_ms"] == pytest.approx(p["predicted_total_time_s"] * 1e3)
    assert (p["predicted_rounds"], p["predicted_converges"]) == (0, True)


def test_run_table_shows_the_main_figures():
    text = run_table(json.loads((RUN / "metrics.json").read_text()))
    for fragment in ("client outage", "251 ms", "12.5 ms", "dc1 / dc2", "completed", "yes"):
        assert fragment in text, text


def _check(link: int, rtt: float, measured: float, bw: float, goodput: float | None,
           ok: bool = True) -> dict:
    return {"link": link, "src": f"dc{link}h1", "dst": f"dc{link + 1}h1", "rtt_ms_configured": rtt,
            "rtt_ms_measured": measured, "bw_mbps": bw, "goodput_mbps": goodput,
            "backend": "delayline", "datapath": "user", "ok": ok}


def test_link_metrics_for_two_links_follow_the_migration_path():
    from experiments.metrics import link_metrics, path_figures

    checks = [_check(1, 40.0, 40.3, 100.0, 93.0), _check(2, 60.0, 60.4, 50.0, 46.0)]
    m = link_metrics(checks, [1, 2])
    assert [lk["link"] for lk in m["links"]] == [1, 2] and m["link_path"] == [1, 2]
    assert m["link_rtt_ms_configured"] == 100.0
    assert m["link_rtt_ms_measured"] == pytest.approx(100.7)
    assert (m["link_bw_mbps"], m["link_goodput_mbps"]) == (50.0, 46.0)
    assert (m["link_backend"], m["link_ok"]) == ("delayline", True)
    # Only the links on the path count: a migration across link 1 alone.
    one = link_metrics(checks, [1])
    assert (one["link_rtt_ms_measured"], one["link_bw_mbps"], len(one["links"])) == \
        (40.3, 100.0, 2)
    # A link not measured leaves the path's measured RTT unknown, never a partial sum.
    assert link_metrics([checks[0], {**checks[1], "rtt_ms_measured": None}],
                        [1, 2])["link_rtt_ms_measured"] is None
    assert path_figures(checks, [1, 2]) == {"rtt_ms_configured": 100.0,
                                            "rtt_ms_measured": pytest.approx(100.7),
                                            "goodput_mbps": 46.0}
    assert path_figures([_check(1, 40.0, 40.3, 100.0, None)], [1])["goodput_mbps"] is None
