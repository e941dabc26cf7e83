"""migrator.qemu.launch: the kernel command line round trip, QEMU's argv, refused values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ground.config import ConfigError
from migrator.memory.workload import PRESETS, WorkloadParams
from migrator.qemu.launch import (
    MIN_MEMORY_MIB,
    Machine,
    Side,
    TapNic,
    UserNic,
    buffer_mib,
    check_guest_memory,
    headroom_mib,
    kernel_cmdline,
    machine_args,
    parse_kernel_cmdline,
    qemu_argv,
    ram_path,
)

ODD = WorkloadParams(dirty_rate_mibps=0.1 + 0.2, working_set_frac=1 / 3, skew="zipf",
                     zipf_s=1.2345678901234567, burst_period_s=10.5, burst_duty=0.25,
                     write_bytes=4096, content="random")


@pytest.mark.parametrize("workload", [*PRESETS.values(), ODD], ids=[*PRESETS, "odd"])
def test_cmdline_round_trips_every_workload_exactly(workload):
    text = kernel_cmdline(workload, 7, "10.1.9.1", 8, 200)
    back = parse_kernel_cmdline(text)
    assert back.workload == workload, text
    assert (back.seed, back.ip, back.prefix, back.buf_mib) == (7, "10.1.9.1", 8, 200)
    assert text.startswith("console=ttyS0 "), "the console must be the first serial port"


def test_cmdline_words_are_the_agents_keys():
    text = kernel_cmdline(PRESETS["web"], 1, "10.0.2.15", 24, 40)
    words = dict(w.split("=", 1) for w in text.split() if w.startswith("wanmig."))
    assert set(words) == {f"wanmig.{k}" for k in (
        "ip", "buf_mib", "rate", "ws", "skew", "zipf_s", "burst_period", "burst_duty",
        "write_bytes", "content", "seed")}
    assert words["wanmig.ip"] == "10.0.2.15/24" and words["wanmig.write_bytes"] == "0"
    agent = (Path(__file__).resolve().parents[3] / "migrator/qemu/agent/agent.c").read_text()
    for key in words:
        assert f'"{key.removeprefix("wanmig.")}"' in agent, f"the agent does not read {key}"


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"seed": -1}, "seed"), ({"seed": True}, "seed"), ({"ip": "10.0.0"}, "vm.ip"),
    ({"ip": "224.0.0.1"}, "vm.ip"), ({"prefix": 33}, "vm.ip.prefix"),
    ({"buf_mib": 0}, "vm.buf_mib"),
])
def test_bad_cmdline_values_name_the_key(kwargs, key):
    args = {"workload": PRESETS["idle"], "seed": 1, "ip": "10.0.0.1", "prefix": 8,
            "buf_mib": 8} | kwargs
    with pytest.raises(ConfigError) as err:
        kernel_cmdline(**args)
    assert err.value.path == key, str(err.value)


def test_parse_refuses_unknown_and_missing_words():
    text = kernel_cmdline(PRESETS["idle"], 1, "10.0.0.1", 8, 8)
    with pytest.raises(ConfigError, match="cmdline.colour"):
        parse_kernel_cmdline(text + " wanmig.colour=red")
    with pytest.raises(ConfigError, match="cmdline.rate"):
        parse_kernel_cmdline(text.replace("wanmig.rate=", "other.rate="))
    with pytest.raises(ConfigError, match="workload.skew"):
        parse_kernel_cmdline(text.replace("wanmig.skew=uniform", "wanmig.skew=pareto"))


def test_memory_floor_and_buffer_headroom():
    for bad in (MIN_MEMORY_MIB - 1, 0, 96.5, True, "128"):
        with pytest.raises(ConfigError) as err:
            check_guest_memory(bad)
        assert err.value.path == "vm.memory"
    sizes = [MIN_MEMORY_MIB, 128, 256, 512, 1024, 4096]
    buffers = [buffer_mib(m) for m in sizes]
    assert buffers == sorted(buffers) and buffers[0] >= 8, buffers
    assert [buffer_mib(m) for m in (128, 256)] == [40, 160], "the measured sizes changed"
    for m in sizes:
        assert buffer_mib(m) + headroom_mib(m) == m


def _machine(**kw) -> Machine:
    base = {"memory_mib": 256, "vcpus": 2, "accel": "tcg", "kernel": Path("/img/vmlinuz"),
            "initrd": Path("/img/initrd.gz"), "mac": "52:54:00:12:34:56",
            "append": kernel_cmdline(PRESETS["web"], 1, "10.1.9.1", 8, buffer_mib(256))}
    return Machine(**(base | kw))


def _side(tag: str, **kw) -> Side:
    base = {"ram": ram_path("vm1", tag), "nic": TapNic(fd=5 if tag == "src" else 6),
            "qmp": Path(f"/run/w/{tag}.qmp"), "console": Path(f"/run/w/{tag}.log"),
            "location": Path(f"/run/w/{tag}.loc")}
    return Side(**(base | kw))


def _opt_of(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_source_and_destination_share_the_machine_arguments():
    m = _machine()
    src = qemu_argv(m, _side("src"))
    dst = qemu_argv(m, _side("dst", incoming=True, paused=True))
    shared = machine_args(m)
    assert src[1:1 + len(shared)] == shared == dst[1:1 + len(shared)]
    assert dst[-3:] == ["-incoming", "defer", "-S"] and "-incoming" not in src
    assert _opt_of(src, "-accel") == ["tcg"] and _opt_of(src, "-cpu") == ["qemu64"]
    assert _opt_of(src, "-machine") == ["pc,memory-backend=ram"]
    assert _opt_of(src, "-smp") == ["2"] and _opt_of(src, "-m") == ["256M"]
    for flag in ("-nodefaults", "-no-user-config"):
        assert flag in src
    assert _opt_of(src, "-device") == ["virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile="]


def test_each_side_has_its_own_files():
    m = _machine()
    argv = qemu_argv(m, _side("src"))
    assert _opt_of(argv, "-object") == [
        "memory-backend-file,id=ram,size=256M,mem-path=/dev/shm/wanmig-qemu-vm1-src.ram,"
        "share=on"]
    assert _opt_of(argv, "-netdev") == ["tap,id=n0,fd=5"]
    assert _opt_of(argv, "-chardev") == [
        "socket,id=qmp,path=/run/w/src.qmp,server=on,wait=off",
        "socket,id=loc,path=/run/w/src.loc,server=on,wait=off"]
    assert _opt_of(argv, "-mon") == ["chardev=qmp,mode=control"]
    # ttyS0 is the console file, ttyS1 the location socket: the order of -serial decides
    assert _opt_of(argv, "-serial") == ["file:/run/w/src.log", "chardev:loc"]
    assert _opt_of(argv, "-append") == [m.append]


def test_nics_and_commas_in_paths():
    user = UserNic((("udp", 17007, 7007), ("tcp", 17070, 7070)))
    assert user.args() == ["-netdev", "user,id=n0,net=10.0.2.0/24,hostfwd=udp:127.0.0.1:17007-"
                                      ":7007,hostfwd=tcp:127.0.0.1:17070-:7070"]
    assert TapNic(ifname="tap-vm1").args() == [
        "-netdev", "tap,id=n0,ifname=tap-vm1,script=no,downscript=no"]
    for bad in (TapNic(), TapNic(fd=3, ifname="t")):
        with pytest.raises(ConfigError):
            bad.args()
    argv = qemu_argv(_machine(), _side("src", qmp=Path("/tmp/a,b/q.sock")))
    assert "socket,id=qmp,path=/tmp/a,,b/q.sock,server=on,wait=off" in argv


@pytest.mark.parametrize(("field", "value", "key"), [
    ("memory_mib", 64, "vm.memory"), ("vcpus", 0, "vm.vcpus"), ("vcpus", 1.5, "vm.vcpus"),
    ("accel", "hvf", "vm.accel"), ("mac", "52:54:00:12:34", "vm.mac"),
    ("mac", "01:00:5e:00:00:01", "vm.mac"), ("mac", "52:54:00:AB:CD:EF", "vm.mac"),
])
def test_bad_machine_values_name_the_key(field, value, key):
    with pytest.raises(ConfigError) as err:
        _machine(**{field: value})
    assert err.value.path == key, str(err.value)


def test_ram_file_names():
    assert ram_path("vm1", "src") == Path("/dev/shm/wanmig-qemu-vm1-src.ram")
    for vm, tag in (("VM", "src"), ("vm1", "../x"), ("vm1", ""), ("", "src")):
        with pytest.raises(ConfigError):
            ram_path(vm, tag)


def test_machine_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _machine().accel = "kvm"  # type: ignore[misc]
