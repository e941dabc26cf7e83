"""migrator.cli and migrator.args: every bad argument is refused with exit 2 and a message
naming it, before anything starts (no result folder, no guest, no socket)."""

from __future__ import annotations

import pytest

from ground.config import ConfigError
from migrator.args import parse_hostport, parse_size
from tests.unit.migrator.wanmigcli import run_wanmig


def _run(argv, capsys, tmp_path, monkeypatch):
    return run_wanmig(argv, capsys, tmp_path, monkeypatch)


MIGRATE = ["migrate", "--loopback", "--memory", "64MiB"]


@pytest.mark.parametrize("extra,arg,expected", [
    (["--memory", "3KiB"], "--memory", "whole number of 4096-byte pages"),
    (["--memory", "256MB"], "--memory", "KiB, MiB or GiB"),
    (["--memory", "1000GiB"], "--memory", "MemAvailable"),
    (["--downtime-ms", "0"], "--downtime-ms", "above 0"),
    (["--downtime-ms", "-5"], "--downtime-ms", "above 0"),
    (["--codec", "zstd-99"], "--codec", "a codec"),
    (["--workload", "gaming"], "--workload", "idle"),
    (["--streams", "0"], "--streams", "1 to 16"),
    (["--mode", "warm"], "--mode", "live, cold"),
    (["--rtt-sim", "-1"], "--rtt-sim", "at least 0"),
    (["--bw-sim", "0"], "--bw-sim", "above 0"),
    (["--max-bandwidth-mbps", "-3"], "--max-bandwidth-mbps", "above 0"),
])
def test_migrate_bad_arguments_exit_2_naming_the_argument(extra, arg, expected, capsys, tmp_path,
                                                           monkeypatch):
    out = tmp_path / "out"
    code, err = _run([*MIGRATE, "--out", str(out), *extra], capsys, tmp_path, monkeypatch)
    assert code == 2, f"{extra}: exit {code}, stderr {err!r}"
    assert f"bad input: {arg}:" in err and expected in err, f"{extra}: stderr {err!r}"
    assert not out.exists() and not (tmp_path / "results").exists(), "nothing may start"


def test_migrate_needs_loopback(capsys, tmp_path, monkeypatch):
    code, err = _run(["migrate", "--memory", "64MiB"], capsys, tmp_path, monkeypatch)
    assert code == 2 and "--loopback" in err, err


def test_source_and_dest_bad_arguments(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("WANMIG_MIGRATION_KEY", raising=False)
    short = tmp_path / "key"
    short.write_bytes(b"short")
    cases = [
        (["migrate-source", "--connect", "nohost", "--vm", "v1"], "--connect"),
        (["migrate-source", "--connect", "h:1", "--vm", "v1"], "--key-file"),
        (["migrate-source", "--connect", "h:1", "--vm", "v1", "--key-file", str(short)],
         "--key-file"),
        (["migrate-source", "--connect", "h:1", "--vm", "v1", "--key-file", str(short),
          "--codec", "gzip"], "--codec"),
        (["migrate-dest", "--listen", "h:99999", "--vm", "v1"], "--listen"),
        (["migrate-dest", "--listen", "h:1", "--vm", "v1", "--key-file",
          str(tmp_path / "missing")], "--key-file"),
    ]
    for argv, arg in cases:
        code, err = _run(argv, capsys, tmp_path, monkeypatch)
        assert code == 2 and f"bad input: {arg}:" in err, f"{argv}: exit {code}, {err!r}"


def test_key_from_environment_must_be_hex_and_long_enough(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WANMIG_MIGRATION_KEY", "zz")
    code, err = _run(["migrate-dest", "--listen", "h:1", "--vm", "v1"], capsys, tmp_path,
                     monkeypatch)
    assert code == 2 and "WANMIG_MIGRATION_KEY" in err and "hexadecimal" in err, err
    monkeypatch.setenv("WANMIG_MIGRATION_KEY", "ab" * 16)
    code, err = _run(["migrate-dest", "--listen", "h:1", "--vm", "v1", "--timeout-s", "0"],
                     capsys, tmp_path, monkeypatch)
    assert code == 2 and "--timeout-s" in err, err


def test_size_and_address_parsing():
    assert parse_size("256MiB") == 256 << 20
    assert parse_size(" 8KiB ") == 8192
    assert parse_size("1GiB") == 1 << 30
    for bad in ("0KiB", "2KiB", "1.5GiB", "12", ""):
        with pytest.raises(ConfigError, match="--memory"):
            parse_size(bad)
    assert parse_hostport("10.0.1.1:7000", "--connect") == ("10.0.1.1", 7000)
    with pytest.raises(ConfigError, match="--listen"):
        parse_hostport(":80", "--listen")


def test_loopback_memory_that_cannot_fit_twice_is_bad_input(capsys, tmp_path, monkeypatch):
    import migrator.memfit as memfit

    monkeypatch.setattr(memfit, "mem_available", lambda *_a: 3 << 30)
    code, err = _run(["migrate", "--loopback", "--memory", "2GiB"], capsys, tmp_path,
                     monkeypatch)
    assert code == 2
    assert "--memory" in err and "'2GiB'" in err and "2 copies" in err, err
    assert not (tmp_path / "results").exists()            # refused before the result folder
