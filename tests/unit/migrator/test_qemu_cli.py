"""``wanmig qemu-migrate``: every bad argument, and a policy QEMU cannot run, is refused with
exit 2 and a message naming it, before any QMP socket is touched or a folder made."""

from __future__ import annotations

import pytest
import yaml

from tests.unit.migrator.wanmigcli import run_wanmig


def _run(argv, capsys, tmp_path, monkeypatch):
    return run_wanmig(argv, capsys, tmp_path, monkeypatch)


def _argv(tmp_path, policy: dict, **over) -> list[str]:
    (tmp_path / "src.ram").write_bytes(b"\0" * 4096)
    (tmp_path / "dst.ram").write_bytes(b"\0" * 4096)
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    args = {"--src-qmp": str(tmp_path / "nowhere-src.qmp"),
            "--dst-qmp": str(tmp_path / "nowhere-dst.qmp"), "--uri": "tcp:10.0.0.1:4444",
            "--listen-uri": "tcp:0.0.0.0:4444", "--src-ram": str(tmp_path / "src.ram"),
            "--dst-ram": str(tmp_path / "dst.ram"),
            "--policy-file": str(tmp_path / "policy.yaml"), "--out": str(tmp_path / "out"),
            **over}
    return ["qemu-migrate", *(x for kv in args.items() for x in kv)]


GOOD = {"codec": "none", "encryption": "none"}


@pytest.mark.parametrize(("policy", "over", "named", "expected"), [
    (GOOD, {"--uri": "10.0.0.1:4444"}, "--uri", "tcp:HOST:PORT"),
    (GOOD, {"--listen-uri": "tcp:0.0.0.0:99999"}, "--listen-uri", "tcp:HOST:PORT"),
    (GOOD, {"--src-ram": "/nonexistent/ram"}, "--src-ram", "memory-backend-file"),
    (GOOD, {"--link-mbps": "0"}, "--link-mbps", "above 0"),
    ({"codec": "lz4"}, {}, "policy.codec", "for vm.kind qemu one of none, zstd-1, xbzrle"),
    ({**GOOD, "throttle": "dirty-limit"}, {}, "policy.throttle", "8.1"),
    ({**GOOD, "max_rounds": 3}, {}, "policy.max_rounds", "no round cap"),
    ({**GOOD, "downtime_target_ms": "x"}, {}, "policy.downtime_target_ms", "number"),
])
def test_bad_input_is_refused_before_anything_starts(tmp_path, capsys, monkeypatch, policy,
                                                      over, named, expected):
    code, err = _run(_argv(tmp_path, policy, **over), capsys, tmp_path, monkeypatch)
    assert code == 2, err
    assert named in err and expected in err, err
    assert not (tmp_path / "out").exists()


def test_no_qemu_at_the_sockets_fails_without_a_result(tmp_path, capsys, monkeypatch):
    argv = _argv(tmp_path, GOOD, **{"--qmp-timeout-s": "0.2"})
    code, err = _run(argv, capsys, tmp_path, monkeypatch)
    assert code == 1 and "no QMP at" in err, err
    assert not (tmp_path / "out" / "result.json").exists()
