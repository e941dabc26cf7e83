"""ground.yamlfile: every YAML file wanmig reads is bounded in size, time and memory, strict
UTF-8, without aliases, and its errors are one line that never repeats the file."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import pytest

from ground.config import ConfigError
from ground.yamlfile import (
    ALIASES_REFUSED,
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    parse_yaml,
    read_yaml,
)

# "Billion laughs": nine levels of nine aliases each, 9 ** 9 = 387 million strings once expanded.
BOMB = "description:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9))
BOMB_BOUND_S = 0.25       # refused at the first alias: milliseconds here, on a loaded machine too
BOMB_BOUND_BYTES = 2 << 20
WORST_BOUND_S = 3.0       # 256 KiB of the costliest YAML: 0.5-0.7 s measured on this machine


def write(tmp_path, data: bytes, name: str = "spec.yaml"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_plain_mapping_reads_back(tmp_path):
    path = write(tmp_path, b"name: x\nwan: [{rtt_ms: 10}]\n")
    assert read_yaml(path) == {"name": "x", "wan": [{"rtt_ms": 10}]}


def test_an_empty_file_is_an_empty_mapping(tmp_path):
    assert read_yaml(write(tmp_path, b"")) == {}
    assert read_yaml(write(tmp_path, b"# only a comment\n")) == {}


def test_non_utf8_names_the_file_and_the_byte_offset(tmp_path):
    path = write(tmp_path, b"name: x\ndescription: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    message = str(info.value)
    assert str(path) in message and "offset 24" in message and "0xe9" in message, message
    assert "UTF-8" in message and "\n" not in message, message


def test_a_byte_order_mark_is_accepted(tmp_path):
    assert read_yaml(write(tmp_path, b"\xef\xbb\xbfname: x\n")) == {"name": "x"}


def test_alias_bomb_refused_in_bounded_time_and_memory(tmp_path):
    path = write(tmp_path, BOMB.encode())
    assert len(BOMB) < 1024
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as info:
            read_yaml(path)
        took = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert ALIASES_REFUSED in message and str(path) in message, message
    assert took < BOMB_BOUND_S, f"refusing the bomb took {took:.3f} s (bound {BOMB_BOUND_S} s)"
    assert peak < BOMB_BOUND_BYTES, f"peak {peak} B allocated (bound {BOMB_BOUND_BYTES} B)"


def test_one_alias_is_refused_too():
    with pytest.raises(ConfigError) as info:
        parse_yaml(b"a: &x 1\nb: *x\n", "f.yaml")
    assert ALIASES_REFUSED in str(info.value)
    assert "line 2" in str(info.value)


def test_an_anchor_without_alias_is_harmless():
    assert parse_yaml(b"a: &x 1\nb: 2\n", "f.yaml") == {"a": 1, "b": 2}


def test_oversize_file_names_the_file(tmp_path):
    path = write(tmp_path, b"description: " + b"x" * MAX_BYTES + b"\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    message = str(info.value)
    assert str(path) in message and f"{MAX_BYTES // 1024} KiB" in message, message
    assert "xxxx" not in message, message


def test_a_file_just_under_the_cap_is_read(tmp_path):
    body = b"description: " + b"x" * (MAX_BYTES - 20) + b"\n"
    assert len(read_yaml(write(tmp_path, body))["description"]) == MAX_BYTES - 20


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as info:
        read_yaml(fifo)
    assert "regular file" in str(info.value)


def test_too_many_nodes():
    doc = ("[" + ", ".join(["1"] * (MAX_NODES + 1)) + "]").encode()
    with pytest.raises(ConfigError) as info:
        parse_yaml(b"k: " + doc, "f.yaml")
    assert f"more than {MAX_NODES} YAML nodes" in str(info.value)


def test_too_deep():
    doc = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    with pytest.raises(ConfigError) as info:
        parse_yaml(doc, "f.yaml")
    assert f"more than {MAX_DEPTH} levels" in str(info.value)


@pytest.mark.parametrize("value", [b"1" * 5000, b"2026-13-45"])
def test_values_python_cannot_build_are_config_errors(value):
    with pytest.raises(ConfigError) as info:
        parse_yaml(b"seed: " + value + b"\n", "f.yaml")
    assert "valid YAML values" in str(info.value)


def test_syntax_error_is_one_line_without_the_text():
    secret = b"topsecret"
    with pytest.raises(ConfigError) as info:
        parse_yaml(b"a: [" + secret + b"\nb: :\n", "f.yaml")
    message = str(info.value)
    assert "valid YAML" in message and "line" in message, message
    assert "\n" not in message and "topsecret" not in message, message


def test_control_character_is_refused():
    with pytest.raises(ConfigError) as info:
        parse_yaml(b"a: b\x00c\n", "f.yaml")
    assert "#x0000" in str(info.value)


def test_a_scalar_file_is_refused_without_echoing_it():
    passwd = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    with pytest.raises(ConfigError) as info:
        parse_yaml(passwd, "/etc/passwd")
    message = str(info.value)
    assert "<top level> (in /etc/passwd)" in message and "mapping" in message, message
    assert "root" not in message and "daemon" not in message, message


@pytest.mark.parametrize(("kind", "refused"), [("flow list", True), ("block mapping", True),
                                               ("quoted scalar", False)])
def test_the_costliest_file_under_the_cap_is_bounded_in_time(kind, refused):
    doc = {"flow list": b"[" + b"1," * (MAX_BYTES // 2 - 1) + b"]",
           "block mapping": b"".join(b"k%d: v\n" % i for i in range(60000))[:MAX_BYTES],
           "quoted scalar": b"d: '" + b"x " * (MAX_BYTES // 2 - 3) + b"'"}[kind]
    assert len(doc) <= MAX_BYTES
    t0 = time.perf_counter()
    try:
        parse_yaml(doc, "f.yaml")
        outcome = False
    except ConfigError as exc:
        outcome = f"more than {MAX_NODES} YAML nodes" in str(exc)
    took = time.perf_counter() - t0
    assert outcome is refused, kind
    assert took < WORST_BOUND_S, f"{kind}: {len(doc)} B took {took:.3f} s " \
                                 f"(bound {WORST_BOUND_S} s)"


def test_every_shipped_yaml_reads_through_the_loader():
    """No shipped file needs an alias, or anything else the loader refuses."""
    root = Path(__file__).resolve().parents[3]
    files = sorted([*root.glob("experiments/*.yaml"), *root.glob("topologies/examples/*.yaml"),
                    *root.glob("tests/fixtures/**/*.yaml")])
    assert len(files) >= 10, files
    for f in files:
        assert isinstance(read_yaml(f), dict), f
