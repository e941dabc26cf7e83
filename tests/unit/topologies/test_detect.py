"""detect.choose: the pure decision from probed facts."""

from __future__ import annotations

import dataclasses

import pytest

from topologies.detect import BACKEND_ENV, DATAPATH_ENV, TOOLS, TSO_ENV, Facts, choose


def facts(**overrides) -> Facts:
    """A machine where everything works; override one fact at a time."""
    base = Facts(root=True, netem=True, netem_error="", ovs_kernel_module=True, ovs_running=True,
                 tools={t: f"/usr/bin/{t}" for t in TOOLS}, os_ken=True, mininet=True,
                 kernel="6.1.0", delayline="/venv/libexec/wanmig/wanmig-delayline-0")
    return dataclasses.replace(base, **overrides)


def test_all_good_machine_has_no_problems():
    choice = choose(facts())
    assert choice.problems == ()
    assert choice.ok
    assert (choice.link_backend, choice.ovs_datapath) == ("netem", "kernel")


@pytest.mark.parametrize(("netem", "backend"), [(True, "netem"), (False, "delayline"),
                                                (None, "delayline")])
def test_backend_follows_netem(netem, backend):
    choice = choose(facts(netem=netem))
    assert choice.link_backend == backend
    assert choice.ok


@pytest.mark.parametrize(("module", "datapath"), [(True, "kernel"), (False, "user")])
def test_datapath_follows_ovs_module(module, datapath):
    choice = choose(facts(ovs_kernel_module=module))
    assert choice.ovs_datapath == datapath
    assert choice.ok


def test_not_root_is_a_problem():
    choice = choose(facts(root=False))
    assert not choice.ok
    assert any("not root" in p for p in choice.problems)


def test_missing_tool_is_named():
    tools = {t: f"/usr/bin/{t}" for t in TOOLS}
    tools["iperf3"] = None
    choice = choose(facts(tools=tools))
    assert choice.problems == ("tool not found: iperf3",)


def test_mininet_and_ovs_not_running_are_problems():
    choice = choose(facts(mininet=False, ovs_running=False))
    assert len(choice.problems) == 2
    assert any("Mininet" in p for p in choice.problems)
    assert any("Open vSwitch is not running" in p for p in choice.problems)


def test_forcing_netem_where_absent_is_a_problem():
    choice = choose(facts(netem=False, netem_error="Unknown qdisc"), force_backend="netem")
    assert not choice.ok
    assert choice.link_backend == "delayline"
    assert len(choice.problems) == 1
    assert BACKEND_ENV in choice.problems[0]
    assert "Unknown qdisc" in choice.problems[0]


def test_forcing_netem_where_present_is_fine():
    choice = choose(facts(), force_backend="netem")
    assert choice.ok and choice.link_backend == "netem"


def test_forcing_delayline_where_netem_exists():
    choice = choose(facts(netem=True), force_backend="delayline")
    assert choice.ok
    assert choice.link_backend == "delayline"


def test_invalid_forced_backend_is_a_problem():
    choice = choose(facts(), force_backend="tbf")
    assert not choice.ok
    assert any(BACKEND_ENV in p and "'tbf'" in p for p in choice.problems)


def test_forcing_user_datapath_where_kernel_exists():
    choice = choose(facts(ovs_kernel_module=True), force_datapath="user")
    assert choice.ok and choice.ovs_datapath == "user"


def test_forcing_kernel_datapath_without_module_is_a_problem():
    choice = choose(facts(ovs_kernel_module=False), force_datapath="kernel")
    assert not choice.ok
    assert choice.ovs_datapath == "user"
    assert any(DATAPATH_ENV in p for p in choice.problems)


def test_invalid_forced_datapath_is_a_problem():
    choice = choose(facts(), force_datapath="dpdk")
    assert not choice.ok
    assert any(DATAPATH_ENV in p and "'dpdk'" in p for p in choice.problems)


def test_userspace_datapath_keeps_offloads_only_with_the_switchs_tso():
    without = choose(facts(ovs_kernel_module=False))
    with_tso = choose(facts(ovs_kernel_module=False, ovs_userspace_tso=True))
    assert (without.userspace_tso, without.offloads) == (False, False)
    assert (with_tso.userspace_tso, with_tso.offloads) == (True, True)
    assert with_tso.ok and without.ok


def test_kernel_datapath_keeps_offloads_and_ignores_userspace_tso():
    choice = choose(facts(ovs_kernel_module=True, ovs_userspace_tso=True))
    assert (choice.ovs_datapath, choice.userspace_tso, choice.offloads) == ("kernel", False, True)


def test_tso_forced_off_turns_the_offloads_off():
    choice = choose(facts(ovs_kernel_module=False, ovs_userspace_tso=True), force_tso="off")
    assert (choice.userspace_tso, choice.offloads, choice.ok) == (False, False, True)


def test_tso_forced_to_anything_else_is_a_problem_naming_the_variable():
    choice = choose(facts(ovs_kernel_module=False, ovs_userspace_tso=True), force_tso="on")
    assert not choice.ok
    assert any(TSO_ENV in p and "'on'" in p for p in choice.problems), choice.problems


def test_delayline_backend_without_the_compiled_relay_is_a_problem():
    choice = choose(facts(netem=False, delayline=None,
                          delayline_error="wanmig-delayline-x is not built"))
    assert choice.link_backend == "delayline"
    assert not choice.ok
    assert any("delay line" in p and "not built" in p for p in choice.problems)


def test_netem_backend_does_not_need_the_compiled_relay():
    assert choose(facts(netem=True, delayline=None)).ok
