"""ground.protocol: one grammar for what the testbed's processes say to each other."""

from __future__ import annotations

import io

import pytest

from ground.protocol import Kind, Message, ProtocolError, expect, format_line, parse_line, say


@pytest.mark.parametrize("kind,fields", [
    (Kind.GO, {}),
    (Kind.PAUSED, {"t": 1764612345.123456}),
    (Kind.LISTENING, {"host": "10.2.1.1", "port": 7700}),
    (Kind.READY, {"pid": 42, "delay_ms": 75.0, "rate_mbps": None}),
    (Kind.PROGRESS, {"phase": "live", "round": 3, "eta_s": None, "t": 1.5}),
])
def test_every_kind_round_trips(kind, fields):
    line = format_line(kind, **fields)
    assert parse_line(line + "\n") == Message(kind, fields)


def test_a_line_that_is_not_a_message_parses_to_none():
    for line in ("", "INFO migrator: round 0", '{"ok": true}', "READYNESS 1", "ready {}"):
        assert parse_line(line) is None, line


def test_a_known_kind_with_bad_fields_is_an_error_never_half_read():
    with pytest.raises(ProtocolError, match="PAUSED: fields are not JSON"):
        parse_line("PAUSED soon")
    with pytest.raises(ProtocolError, match="PAUSED: got fields .*expected a JSON object"):
        parse_line("PAUSED 1764612345.1")            # the old, bare-number form
    with pytest.raises(ProtocolError, match="expected a JSON object"):
        parse_line("READY [1, 2]")
    msg = parse_line('VERIFIED {"t": "soon"}')
    assert msg is not None
    with pytest.raises(ProtocolError, match="VERIFIED: got t='soon'"):
        _ = msg.t
    with pytest.raises(ProtocolError, match="no field 'iface'"):
        _ = Message(Kind.GO)["iface"]


def test_expect_takes_only_a_well_formed_message_of_its_kind():
    assert expect('GO {"iface": "vm1-eth1"}', Kind.GO) == Message(Kind.GO, {"iface": "vm1-eth1"})
    for line in ("READY", "GO [1]", "go", ""):
        assert expect(line, Kind.GO) is None, line


def test_say_writes_one_flushed_line():
    out = io.StringIO()
    say(Kind.RESUMED, out, t=2.0)
    assert out.getvalue() == 'RESUMED {"t": 2.0}\n'
