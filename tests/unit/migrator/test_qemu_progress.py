"""migrator.qemu.progress: query-migrate samples recorded from real QEMU 7.2 migrations
(tests/fixtures/qemu: a completed one at 200 Mbit/s, one whose destination was killed) and
made-up ones, turned into the emulated migrator's rows and result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrator.core.report import rounds_csv
from migrator.qemu.progress import final_rows, live_rows, qemu_figures, result, verify_row

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "qemu"


def load(kind: str) -> dict:
    rec = json.loads((FIXTURES / f"{kind}.json").read_text())
    rec["passes"] = {int(k): v for k, v in rec["passes"].items()}
    rec["samples"] = [tuple(s) for s in rec["samples"]]
    return rec


def rows_of(rec: dict, **kw) -> list:
    return final_rows(rec["samples"], rec["final"], codec="none",
                      throttle_policy="auto-converge", end_t=rec["ended_t"],
                      passes=rec["passes"], paused_t=rec["paused_t"], **kw)


def test_completed_rows_add_up_to_qemus_totals():
    rec = load("completed")
    rows = rows_of(rec)
    ram = rec["final"]["ram"]
    ctx = [(r.round, r.phase, r.pages, r.zero_pages, r.bytes_on_wire) for r in rows]
    assert sum(r.pages for r in rows) == ram["normal"], ctx
    assert sum(r.zero_pages for r in rows) == ram["duplicate"], ctx
    assert sum(r.bytes_on_wire for r in rows) == ram["transferred"], ctx
    assert all(r.bytes_raw == r.pages * 4096 for r in rows)
    assert [r.phase for r in rows][-1] == "stop-copy"
    assert {r.phase for r in rows[:-1]} == {"live"}
    # QEMU's own count of what it sent with the guest paused is the stop-copy row.
    assert rows[-1].bytes_on_wire == ram["downtime-bytes"], ctx


def test_rows_run_back_to_back_from_the_first_pass_to_the_end():
    rec = load("completed")
    rows = rows_of(rec)
    total = sum(r.duration_s for r in rows)
    assert total == pytest.approx(rec["ended_t"] - rec["passes"][1], abs=1e-9)
    pause = sum(r.duration_s for r in rows if r.phase == "live")
    assert pause == pytest.approx(rec["paused_t"] - rec["passes"][1], abs=1e-9)
    assert [r.round for r in rows] == sorted(r.round for r in rows)


def test_first_round_sends_the_filled_memory():
    rec = load("completed")
    first = rows_of(rec)[0]
    # 32 MiB were filled before the source started: at least that many non-zero pages.
    assert first.round == 0 and first.pages >= 8192, first


def test_dirty_rate_of_a_round_is_what_the_next_one_sent():
    rec = load("completed")
    rows = rows_of(rec)
    for row, nxt in zip(rows, rows[1:], strict=False):
        if row.duration_s > 0:
            expect = (nxt.pages + nxt.zero_pages) * 4096 / row.duration_s
            assert row.dirty_rate_Bps == pytest.approx(expect), (row, nxt)


def test_aborted_run_ends_in_an_abort_row_with_what_was_sampled():
    rec = load("aborted")
    rows = rows_of(rec, completed=False)
    last_ram = next(i["ram"] for _, i in reversed(rec["samples"]) if i.get("ram"))
    assert rows[-1].phase == "abort"
    assert sum(r.bytes_on_wire for r in rows) == last_ram["transferred"]
    assert sum(r.pages for r in rows) == last_ram["normal"]
    res = result(rows, outcome="aborted", stop_reason="x", memory_bytes=rec["memory_bytes"],
                 downtime_target_s=0.5, error=rec["final"].get("error-desc"))
    assert res.downtime_s == 0.0 and res.outcome == "aborted" and res.error


def _sample(t: float, count: int, normal: int, dup: int, wire: int, **top) -> tuple:
    return (t, {"status": "active", **top,
                "ram": {"dirty-sync-count": count, "normal": normal, "duplicate": dup,
                        "transferred": wire, "page-size": 4096, "mbps": 80.0,
                        "remaining": 4096 * 10}})


def test_each_sampled_sync_is_a_row_and_merged_syncs_skip_numbers():
    samples = [_sample(0.1, 1, 10, 5, 50_000), _sample(1.0, 2, 100, 20, 500_000),
               _sample(1.5, 4, 150, 20, 700_000, **{"cpu-throttle-percentage": 30})]
    rows = live_rows(samples, codec="none", throttle_policy="auto-converge",
                     passes={1: 0.0, 2: 0.9, 3: 1.2, 4: 1.4})
    assert [(r.round, r.pages, r.zero_pages, r.bytes_on_wire) for r in rows] == \
        [(0, 100, 20, 500_000), (1, 50, 0, 200_000)]
    assert rows[0].duration_s == pytest.approx(0.9) and rows[1].duration_s == \
        pytest.approx(0.5)
    assert rows[1].throttle == pytest.approx(0.3)
    assert rows[0].rate_Bps == pytest.approx(80e6 / 8)
    # while QEMU runs, the dirty rate is what it found dirty at the sync (remaining)
    assert rows[0].dirty_rate_Bps == pytest.approx(40960 / 0.9)


def test_live_rows_are_only_the_ended_rounds():
    samples = [_sample(0.1, 1, 10, 5, 50_000), _sample(0.2, 1, 20, 5, 90_000)]
    assert live_rows(samples, codec="none", throttle_policy="none") == []


def test_stop_copy_share_follows_downtime_bytes():
    samples = [_sample(0.1, 1, 0, 0, 0), _sample(1.0, 2, 100, 0, 400_000)]
    final = {"status": "completed", "downtime": 20,
             "ram": {"dirty-sync-count": 3, "normal": 200, "duplicate": 0,
                     "transferred": 800_000, "downtime-bytes": 100_000, "page-size": 4096}}
    rows = final_rows(samples, final, codec="zstd-1", throttle_policy="none", end_t=1.6,
                      passes={1: 0.0, 2: 0.95}, paused_t=1.5)
    live, stop = rows[-2], rows[-1]
    assert (stop.phase, stop.bytes_on_wire, stop.pages) == ("stop-copy", 100_000, 25)
    assert (live.bytes_on_wire, live.pages) == (300_000, 75)
    assert stop.duration_s == pytest.approx(0.1) and live.duration_s == pytest.approx(0.55)
    v = verify_row(stop, 0.04)
    assert (v.phase, v.round, v.bytes_on_wire, v.duration_s) == ("verify", stop.round, 0, 0.04)
    res = result([*rows, v], outcome="completed", stop_reason="converged",
                 memory_bytes=1 << 27, downtime_target_s=0.3, final_copy_s=0.1,
                 verify_s=0.04, resume_s=0.01, integrity_ok=True)
    assert res.downtime_s == pytest.approx(0.15) and res.bytes_on_wire == 800_000
    assert res.total_time_s == pytest.approx(1.64) and res.bytes_raw == 200 * 4096
    assert rounds_csv(res.rounds).count("\n") == len(rows) + 2


def test_qemu_figures_keep_qemus_names():
    rec = load("completed")
    fig = qemu_figures(rec["samples"], rec["final"])
    for key in ("total-time", "downtime", "setup-time", "transferred", "normal", "duplicate",
                "dirty-sync-count", "multifd-bytes", "downtime-bytes", "expected-downtime",
                "cpu-throttle-percentage"):
        assert key in fig, key
    assert fig["transferred"] == rec["final"]["ram"]["transferred"]
    assert fig["expected-downtime"] == 500
