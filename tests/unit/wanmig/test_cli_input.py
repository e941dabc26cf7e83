"""The wanmig command on bad input: exit status 2 and a message naming the key, before anything
is started. Nothing here needs root: root is faked away, and reaching the root check fails."""

from __future__ import annotations

import json
import os
import signal

import pytest

import topologies.cli as topologies_cli
import topologies.detect as detect
from ground.errors import Exit
from wanmig.cli import main

EXIT_OK, EXIT_FAIL, EXIT_INPUT = Exit.OK, Exit.FAIL, Exit.INPUT


@pytest.fixture(autouse=True)
def _never_privileged(monkeypatch):
    """Act as an unprivileged user, even when the tests run as root, and make anything that
    would build a network or probe the kernel fail the test loudly."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    def forbidden(*_a, **_k):
        raise AssertionError("input should have been rejected before this point")

    monkeypatch.setattr(topologies_cli, "need_root", forbidden)
    monkeypatch.setattr(topologies_cli, "ready_choice", forbidden)
    monkeypatch.setattr(detect, "probe_netem", forbidden)
    monkeypatch.setattr(detect, "probe_ovs_module", forbidden)
    previous = signal.getsignal(signal.SIGTERM)   # main() installs its own SIGTERM handler
    yield
    signal.signal(signal.SIGTERM, previous)


def test_linkcheck_negative_rtt_is_bad_input(capsys):
    assert main(["linkcheck", "--rtt", "-3"]) == EXIT_INPUT
    out, err = capsys.readouterr()
    assert "wan[0].rtt_ms" in err
    assert "-3" in err
    assert out == ""


def test_linkcheck_rtt_above_maximum_is_bad_input(capsys):
    assert main(["linkcheck", "--rtt", "5000"]) == EXIT_INPUT
    assert "wan[0].rtt_ms" in capsys.readouterr().err


def test_linkcheck_misspelt_key_in_yaml(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("wan:\n  - rtt_ms: 100\n    dealy: 5\n")
    assert main(["linkcheck", str(path)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "wan[0].dealy" in err
    assert "bad input" in err


def test_linkcheck_too_few_pings(capsys):
    assert main(["linkcheck", "--pings", "5"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "--pings" in err
    assert "20" in err


def test_linkcheck_override_on_non_mapping_wan(tmp_path, capsys):
    path = tmp_path / "odd.yaml"
    path.write_text("wan: [5]\n")
    assert main(["linkcheck", str(path), "--rtt", "10"]) == EXIT_INPUT
    assert "wan" in capsys.readouterr().err


def test_net_missing_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["net", "missing.yaml"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "missing.yaml" in err
    assert "readable" in err


def test_net_invalid_yaml(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("wan: [\n")
    assert main(["net", str(path)]) == EXIT_INPUT
    assert "valid YAML" in capsys.readouterr().err


def test_net_top_level_not_a_mapping(tmp_path, capsys):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    assert main(["net", str(path)]) == EXIT_INPUT
    assert "mapping" in capsys.readouterr().err


def test_unknown_subcommand_exits_2():
    with pytest.raises(SystemExit) as info:
        main(["fly"])
    assert info.value.code == 2


def test_check_json_without_root(capsys):
    status = main(["check", "--json"])
    assert status in (EXIT_OK, EXIT_FAIL)
    record = json.loads(capsys.readouterr().out)
    assert {"link_backend", "ovs_datapath", "ok"} <= set(record)
    assert record["link_backend"] in ("netem", "delayline")
    assert record["ovs_datapath"] in ("kernel", "user")
    assert record["ok"] is (status == EXIT_OK)
    # not root here, so the testbed cannot run and says why
    assert record["ok"] is False
    assert any("not root" in p for p in record["problems"])
