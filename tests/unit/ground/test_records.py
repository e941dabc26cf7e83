"""ground.records: a process named by PID and start time, and the records read back."""

from __future__ import annotations

import os

from ground.records import ancestors, read_records, same_process, start_time, write_record


def test_a_process_is_its_pid_and_its_start_time():
    me, start = os.getpid(), start_time(os.getpid())
    assert start is not None and same_process(me, start) and same_process(me, None)
    assert not same_process(me, start + 1)                 # the PID reused by another process
    for bad in (None, 0, -3, True, "12", 1.5):
        assert not same_process(bad, None), bad
    assert os.getppid() == ancestors(me)[0]


def test_records_are_written_whole_and_unreadable_ones_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("WANMIG_STATE_DIR", str(tmp_path))
    write_record(tmp_path / "guest-a.json", {"vm": "a"})
    write_record(tmp_path / "guest-a.json", {"vm": "a", "pid": 7})       # replaced whole
    (tmp_path / "guest-b.json").write_text("{half")
    (tmp_path / "guest-c.json").write_text("[1, 2]")
    got = read_records("guest-*.json")
    assert got == [{"vm": "a", "pid": 7, "_path": str(tmp_path / "guest-a.json")}]
    assert not list(tmp_path.glob("*.tmp"))
