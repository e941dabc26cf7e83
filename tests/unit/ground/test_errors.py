"""ground.errors and ground.meta.out_dir: one exit status per kind of error, said in one place."""

from __future__ import annotations

import pytest

from ground.config import ConfigError
from ground.errors import Exit, NotAsAskedError, UsageError, exit_status, need_root
from ground.meta import out_dir


class _LinkOffError(NotAsAskedError):
    pass


def test_each_kind_of_error_has_its_exit_status():
    assert exit_status(ConfigError("wan[0].rtt_ms", -3, "at least 0")) is Exit.INPUT
    assert exit_status(UsageError("not root")) is Exit.INPUT
    assert exit_status(_LinkOffError("RTT off by 5 ms")) is Exit.FAIL
    assert exit_status(KeyboardInterrupt()) is Exit.INTERRUPTED
    assert exit_status(ValueError("a bug")) is None          # shown with its traceback
    assert [int(e) for e in Exit] == [0, 1, 2, 130]


def test_need_root_says_what_needs_it(monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(UsageError, match="runs build networks: run it as root"):
        need_root("runs build networks")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    need_root("anything")


def test_out_dir_takes_a_new_or_empty_folder_else_names_the_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("WANMIG_RESULTS", str(tmp_path / "results"))
    assert out_dir(str(tmp_path / "new"), "x") == tmp_path / "new"
    assert (tmp_path / "new").is_dir()
    (tmp_path / "new" / "file").write_text("taken")
    with pytest.raises(ConfigError, match="--out: got .* a new or empty folder"):
        out_dir(str(tmp_path / "new"), "x")
    made = out_dir(None, "quick")
    assert made.parent == tmp_path / "results" and made.name.endswith("-quick")
