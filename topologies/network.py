"""The Mininet adapter: a network plan becomes live nodes, links, shaping and delay lines.

``WanNetwork`` is a context manager: whatever happens inside (an error, Ctrl-C, SIGTERM turned
into KeyboardInterrupt by the CLI) the network is torn down on the way out. Before anything is
created, the names it will create are written to a cleanup record (topologies/cleanup.py).
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ground.errors import NotAsAskedError
from ground.protocol import Kind, expect
from topologies.cleanup import Registry, netns_inode, state_dir
from topologies.delaybin import binary
from topologies.delayline import relay_argv
from topologies.detect import Choice
from topologies.plan import PREFIX_LEN, NetworkPlan, plan_network
from topologies.shaping import (
    Direction,
    delayline_shaping_cmds,
    netem_cmds,
    redirect_cmds,
    relay_burst_us,
    split_link,
)
from topologies.spec import TopologySpec, WanLinkSpec
from topologies.switch import SwitchController, switch_class

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 10.0
STP_TIMEOUT_S = 90.0
MIN_TCP_BUFFER = 6 << 20


class LinkError(NotAsAskedError):
    """A link could not be set up as asked: never carried on with as a warning."""


@dataclass
class WanLinkState:
    """One WAN link as built: what a result records about it."""

    index: int
    spec: WanLinkSpec
    direction: Direction
    backend: str                     # 'netem' or 'delayline'
    node: str                        # the WAN node (namespace) between the two border switches
    forwarding: str = ""             # 'relay' (the delay line) or 'tc-mirred' (kernel)
    node_pid: int = 0
    shaped_devs: list[str] = field(default_factory=list)   # [a->b egress, b->a egress]
    relay: str | None = None
    relay_proc: Any = None
    relay_stats_path: str | None = None
    relay_control_path: str | None = None   # runtime changes (topologies.linkcontrol)
    relay_stats: dict | None = None
    fabric_rtt_ms: float | None = None    # what switches and veths add to the RTT (measured)
    relay_delay_ms: float | None = None   # the relay's one-way delay after compensating it

    def record(self) -> dict:
        return {"index": self.index, "between": [self.spec.a, self.spec.b],
                "rtt_ms": self.spec.rtt_ms, "bw_mbps": self.spec.bw_mbps,
                "loss_pct": self.spec.loss_pct, "jitter_ms": self.spec.jitter_ms,
                "queue_pkts": self.spec.queue_pkts, "mtu": self.spec.mtu,
                "one_way": vars(self.direction), "backend": self.backend, "node": self.node,
                "forwarding": self.forwarding, "shaped_devs": self.shaped_devs,
                "fabric_rtt_ms": self.fabric_rtt_ms, "relay_delay_ms": self.relay_delay_ms,
                "relay_stats": self.relay_stats}


def needs_delay(d: Direction) -> bool:
    return d.delay_ms > 0 or d.jitter_ms > 0 or d.loss_pct > 0


def tcp_buffer_bytes(spec: TopologySpec) -> int:
    """Per-host TCP buffer ceiling: four bandwidth-delay products of the fattest WAN link (an
    unshaped link counts as 1 Gbit/s)."""
    bdp = max((w.bdp_bytes if w.bw_mbps is not None else 1e9 / 8 * w.rtt_ms / 1e3
               for w in spec.wan), default=0.0)
    return int(max(MIN_TCP_BUFFER, 4 * bdp))


def run_checked(cmd: list[str], what: str) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise LinkError(f"{what}: `{' '.join(cmd)}` failed ({res.returncode}): "
                        f"{(res.stderr or res.stdout).strip()}")
    return res.stdout


def in_node(pid: int, cmd: list[str]) -> list[str]:
    """``cmd`` run inside the network namespace of the Mininet node whose shell is ``pid``."""
    return ["mnexec", "-a", str(pid), *cmd]


def qdisc_kinds(pid: int, dev: str) -> list[str]:
    out = run_checked(in_node(pid, ["tc", "-j", "qdisc", "show", "dev", dev]),
                      f"reading qdiscs of {dev}")
    return [q.get("kind", "") for q in json.loads(out or "[]")]


class WanNetwork:
    """Sites, switches, hosts and WAN links, live; ``with WanNetwork(spec, choice) as net:``."""

    def __init__(self, spec: TopologySpec, choice: Choice, workdir: str | Path,
                 seed: int = 1, relay_always: bool = False,
                 controller: SwitchController | None = None) -> None:
        """``relay_always``: use the delay line even where nothing needs delaying (benchmarks
        of the relay itself at 0 ms). ``controller``: the controller the switches connect to
        (started and stopped with the network, as Mininet does with the one it is given), else
        the switches are standalone learning bridges."""
        self.spec = spec
        self.choice = choice
        self.plan: NetworkPlan = plan_network(spec)
        self.workdir = Path(workdir)
        self.seed = seed
        self.relay_always = relay_always
        self.net: Any = None
        self.links: list[WanLinkState] = []
        self.registry: Registry | None = None
        self.stp = self.plan.switch_graph_has_cycle()
        self.wan_nodes: dict[str, Any] = {}   # name => Mininet node of each WAN link
        self.control = controller
        self.port_rcvbuf: dict | None = None    # the switch ports' receive buffer (portbuf)
        if controller is not None:
            self.stp = False          # the controller floods on its own spanning tree

    # -- life cycle ---------------------------------------------------------------------------
    def __enter__(self) -> WanNetwork:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from mininet.log import setLogLevel
        from mininet.net import Mininet

        setLogLevel("warning")
        # Importing mininet.log makes every logger created afterwards a MininetLogger, with a
        # handler of its own (no newline) at Mininet's level: a module imported later (a
        # fleet's, say) would lose its INFO lines and print its warnings twice.
        logging.setLoggerClass(logging.Logger)
        self.workdir.mkdir(parents=True, exist_ok=True)
        p = self.plan
        relays = [w.relay for w in p.wan]
        self.registry = Registry(self.spec.name, [s.name for s in p.switches],
                                 [h.name for h in p.hosts] + relays)
        if self.control is not None:
            self.control.start()
            self.registry.add_processes(self.control.pids())
        self._size_port_buffers()
        self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
                           autoStaticArp=False)
        self._add_nodes()
        self._add_links()
        self.net.build()
        # WAN nodes are namespaces like hosts, but not hosts: keep them out of net.hosts so that
        # Mininet's pingall and CLI see only hosts with addresses; stop() ends them.
        self.wan_nodes = {n.name: n for n in self.net.hosts if n.name in set(relays)}
        self.net.hosts = [h for h in self.net.hosts if h.name not in self.wan_nodes]
        namespaced = list(self.net.hosts) + list(self.wan_nodes.values())
        self.registry.add_processes([n.pid for n in namespaced + list(self.net.switches) if n.pid])
        self.registry.update(netns=sorted({i for n in namespaced if (i := netns_inode(n.pid))}))
        self.net.start()
        self._configure_interfaces()
        self._configure_wan()
        if self.stp:
            self._wait_stp()
        if self.control is not None:
            self.control.wait_converged(len(p.switches), len(p.fabric_links) + len(p.wan))
        self._compensate_fabric()
        self.verify_shaping()
        log.info("network %s up: %d hosts, %d switches, %d WAN link(s), backend %s, datapath %s",
                 self.spec.name, len(p.hosts), len(p.switches), len(p.wan),
                 self.choice.link_backend, self.choice.ovs_datapath)

    def stop(self) -> None:
        for link in self.links:
            self._stop_relay(link)
        if self.control is not None:
            self.control.stop()
        if self.net is not None:
            self._remove_bridges()
            try:
                self.net.stop()
            except Exception:  # noqa: BLE001 - teardown goes on; wanmig clean is the backstop
                log.exception("Mininet teardown failed; run `wanmig clean`")
            for node in self.wan_nodes.values():
                node.terminate()
            self.wan_nodes = {}
            self.net = None
        if self.port_rcvbuf is not None:
            from topologies.portbuf import restore
            if restore(self.port_rcvbuf):
                log.info("net.core.rmem_default put back to %d", self.port_rcvbuf["before"])
        if self.registry is not None:
            from topologies.cleanup import clean_record
            left = clean_record(dict(self.registry.data, _path=str(self.registry.path)))
            if left:
                log.info("teardown removed what was left: %s", "; ".join(left))
            self.registry.remove()
            self.registry = None

    def _remove_bridges(self) -> None:
        """Our bridges out of Open vSwitch before Mininet deletes the veths under them (it stops
        links before switches). A userspace-datapath port whose device vanishes under it can
        leave OVS with a stale device that a same-named veth of the next network is bound to,
        deaf: the switches connect and take their flows but never pass a received frame up
        (openvswitch/ovs-issues#313; seen here as a network whose controller never got a
        packet-in, a few times in a hundred networks). ``clean_record`` is the backstop."""
        names = [sw.name for sw in self.net.switches]
        if not names:
            return
        cmd = ["ovs-vsctl", "--timeout=10"]
        for name in names:
            cmd += ["--", "--if-exists", "del-br", name]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            log.warning("removing the bridges %s failed: %s", names, res.stderr.strip())

    # -- building -----------------------------------------------------------------------------
    def _size_port_buffers(self) -> None:
        """Before any port exists: the userspace switch's ports get receive buffers that do
        not overflow while it waits for a core (``topologies.portbuf``)."""
        if self.choice.ovs_datapath != "user":
            return
        from topologies.portbuf import raise_to, read_default, write_default

        before = read_default()
        wanted = raise_to(before)
        if wanted is not None:
            write_default(wanted)
            log.info("net.core.rmem_default %d -> %d for the switch ports", before, wanted)
        self.port_rcvbuf = {"before": before, "set": wanted, "bytes": wanted or before}
        assert self.registry is not None
        self.registry.update(port_rcvbuf=self.port_rcvbuf)

    def _add_nodes(self) -> None:
        from mininet.node import OVSBridge

        dp = "user" if self.choice.ovs_datapath == "user" else "kernel"
        for sw in self.plan.switches:
            if self.control is not None:
                self.net.addSwitch(sw.name, cls=switch_class(), datapath=dp, dpid=sw.dpid,
                                   ctl_port=self.control.port_for(sw.site))
            else:
                self.net.addSwitch(sw.name, cls=OVSBridge, datapath=dp, dpid=sw.dpid,
                                   stp=self.stp)
        for h in self.plan.hosts:
            self.net.addHost(h.name, ip=f"{h.ip}/{PREFIX_LEN}", mac=h.mac)
        for w in self.plan.wan:
            self.net.addHost(w.relay, ip=None)

    def _add_links(self) -> None:
        for h in self.plan.hosts:
            self.net.addLink(h.name, h.switch)
        for a, b in self.plan.fabric_links:
            self.net.addLink(a, b)
        for w in self.plan.wan:
            spec = self.spec.wan[w.index - 1]
            d = split_link(spec)
            state = WanLinkState(w.index, spec, d, self.choice.link_backend, node=w.relay)
            la = self.net.addLink(w.a_switch, w.relay)    # relay side: wl<k>-eth0, faces a
            lb = self.net.addLink(w.relay, w.b_switch)    # relay side: wl<k>-eth1, faces b
            # Egress of the b-facing interface carries a->b, and the other way round.
            state.shaped_devs = [lb.intf1.name, la.intf2.name]
            use_relay = state.backend == "delayline" and (needs_delay(d) or self.relay_always)
            state.forwarding = "relay" if use_relay else "tc-mirred"
            state.relay = w.relay if use_relay else None
            self.links.append(state)

    def _configure_interfaces(self) -> None:
        """Offloads as the fabric takes them (``Choice.offloads``), MTU, TCP buffers."""
        buf = tcp_buffer_bytes(self.spec)
        # A netem node's qdiscs must see wire frames; the delay line takes super-frames and
        # models each wire frame itself, and a kernel-forwarded node (HTB) counts its queue
        # in bytes.
        wan_nodes = {link.node for link in self.links if link.backend == "netem"}
        hypervisors = {h.name for h in self.plan.hosts if h.role == "hypervisor"}
        for host in [*self.net.hosts, *self.wan_nodes.values()]:
            host.cmd("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                     "net.ipv6.conf.default.disable_ipv6=1")
            for intf in host.intfList():
                if intf.name != "lo":
                    self._configure_intf(host, intf.name, always_offload=host.name in wan_nodes)
            self._node_checked(host, f"sysctl -qw net.ipv4.tcp_rmem='4096 131072 {buf}' "
                                     f"net.ipv4.tcp_wmem='4096 65536 {buf}'")
            if host.name in hypervisors:
                # A migration's streams pause between rounds; after an idle RTO Linux would
                # restart them from a 10-segment window, and over 150 ms the final copy would
                # crawl through slow start while the guest is paused.
                self._node_checked(host, "sysctl -qw net.ipv4.tcp_slow_start_after_idle=0")
        for sw in self.net.switches:
            for intf in sw.intfList():
                if intf.name != "lo":
                    self._configure_intf(None, intf.name)

    def _configure_intf(self, node: Any, name: str, always_offload: bool = False) -> None:
        """One interface: the network's MTU, and transmit offloads off where the fabric cannot
        take super-frames (the userspace datapath without TSO stalls TCP otherwise). ``node``
        None: the interface is in the root namespace (a switch port)."""
        cmds = []
        if self.spec.mtu != 1500:
            cmds.append(f"ip link set dev {name} mtu {self.spec.mtu}")
        if not self.choice.offloads or always_offload:
            cmds.append(f"ethtool -K {name} tx off tso off gso off")
        for cmd in cmds:
            if node is None:
                run_checked(cmd.split(), f"configuring {name}")
            else:
                self._node_checked(node, cmd)

    def configure_port(self, name: str) -> None:
        """A port made after start in the root namespace (a QEMU guest's tap)."""
        self._configure_intf(None, name)

    def configure_new_link(self, host: Any, host_intf: Any, sw_intf: Any) -> None:
        """A link made after start (a host re-plugged): configured like the others."""
        self._configure_intf(host, host_intf.name)
        self._configure_intf(None, sw_intf.name)

    @staticmethod
    def _node_checked(node: Any, cmd: str) -> str:
        out = node.cmd(f"{cmd}; echo __rc=$?")
        text, _, rc = out.rpartition("__rc=")
        if rc.strip() != "0":
            raise LinkError(f"on {node.name}: `{cmd}` failed: {text.strip()}")
        return text

    def _configure_wan(self) -> None:
        for link in self.links:
            d = link.direction
            node = self.wan_nodes[link.node]
            link.node_pid = node.pid
            a_to_b, b_to_a = link.shaped_devs
            cmds = []
            if link.forwarding == "tc-mirred":
                for dev in link.shaped_devs:
                    cmds += netem_cmds(dev, d) if link.backend == "netem" \
                        else delayline_shaping_cmds(dev, d)
                cmds += redirect_cmds(b_to_a, a_to_b) + redirect_cmds(a_to_b, b_to_a)
            # else: the relay does rate, queue, loss, delay and jitter (topologies/linkmodel.py)
            for cmd in cmds:
                run_checked(in_node(node.pid, cmd), f"WAN link {link.index} on {link.node}")
            if link.relay:
                self._start_relay(link)

    def _compensate_fabric(self) -> None:
        """The switches, veths and the relay's own path add to the RTT (0.4 to 1 ms here with
        userspace OVS, more under a controller's multi-table pipeline): measured once with
        pings between the link's sites, and taken off the relay's delay, so that host to host
        the RTT is the one asked for. Links with jitter or loss are left as built (their
        pings cannot measure it cleanly); every figure is recorded."""
        from topologies.measure import ping

        for link in self.links:
            d = link.direction
            if link.relay is None or d.delay_ms <= 0:
                continue
            if d.jitter_ms > 0 or d.loss_pct > 0:
                log.info("WAN link %d: fabric latency not compensated (jitter or loss)",
                         link.index)
                continue
            a = self.net.get(self.plan.hosts_at(link.spec.a)[0].name)
            b = self.plan.hosts_at(link.spec.b)[0]
            got = ping(a, b.ip, 20, interval_s=0.02)
            extra = got.avg_ms - 2 * d.delay_ms
            link.fabric_rtt_ms = extra
            if extra <= 0.05:
                continue
            delay = max(0.0, d.delay_ms - extra / 2)
            log.info("WAN link %d: the fabric adds %.2f ms RTT; relay delay %.3f -> %.3f ms "
                     "each way", link.index, extra, d.delay_ms, delay)
            self._stop_relay(link)
            self._start_relay(link, delay_ms=delay)

    def _start_relay(self, link: WanLinkState, delay_ms: float | None = None) -> None:
        node = self.wan_nodes[link.relay]
        a_to_b, b_to_a = link.shaped_devs
        ifs = [b_to_a, a_to_b]     # the relay's side a faces site a
        for name in ifs:
            self._node_checked(node, f"ip link set dev {name} promisc on")
        d = link.direction
        delay = d.delay_ms if delay_ms is None else delay_ms
        link.relay_delay_ms = delay
        link.relay_stats_path = str(self.workdir / f"{link.relay}-stats.json")
        # A socket path has at most 107 bytes: not under a run folder, next to the records.
        link.relay_control_path = str(state_dir() / f"{link.relay}-{os.getpid()}.ctl")
        Path(link.relay_stats_path).unlink(missing_ok=True)    # never read a previous run's
        cmd = relay_argv(binary(), ifs[0], ifs[1], d, delay, self.seed + link.index,
                         link.relay_stats_path, link.relay_control_path)
        errlog = open(self.workdir / f"{link.relay}.log", "w")  # noqa: SIM115 - lives with proc
        proc = node.popen(cmd, stdout=subprocess.PIPE, stderr=errlog, text=True)
        link.relay_proc = proc
        ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
        line = proc.stdout.readline() if ready else ""
        msg = expect(line, Kind.READY)
        if msg is None:
            proc.kill()
            errlog.flush()
            err = (self.workdir / f"{link.relay}.log").read_text()[-2000:]
            raise LinkError(f"delay line of WAN link {link.index} did not start "
                            f"(got {line!r}): {err}")
        got = msg.fields
        asked = {"delay_ms": delay, "jitter_ms": d.jitter_ms, "loss_pct": d.loss_pct,
                 "rate_mbps": d.bw_mbps, "queue_pkts": d.queue_pkts, "mtu": d.mtu,
                 "burst_us": relay_burst_us(delay), "vnet_hdr": True}
        if any(got.get(k) != v for k, v in asked.items()):
            raise LinkError(f"delay line of WAN link {link.index} reports {got}, asked {asked}")
        self.registry.add_processes([proc.pid])
        log.info("delay line %s: pid %d, %s", link.relay, proc.pid, got)

    def _stop_relay(self, link: WanLinkState) -> None:
        proc = link.relay_proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        link.relay_proc = None
        if link.relay_control_path:
            Path(link.relay_control_path).unlink(missing_ok=True)
        self.read_relay_stats(link)

    def read_relay_stats(self, link: WanLinkState) -> dict | None:
        if link.relay_stats_path and Path(link.relay_stats_path).exists():
            try:
                link.relay_stats = json.loads(Path(link.relay_stats_path).read_text())
            except ValueError:
                pass
        return link.relay_stats

    def _wait_stp(self) -> None:
        deadline = time.monotonic() + STP_TIMEOUT_S
        while time.monotonic() < deadline:
            if all(sw.connected() for sw in self.net.switches):
                return
            time.sleep(0.5)
        raise LinkError(f"spanning tree did not converge within {STP_TIMEOUT_S:.0f} s")

    # -- checks and access ------------------------------------------------------------------
    def verify_shaping(self) -> None:
        """The qdiscs asked for are the qdiscs the kernel has (OVS can reset them)."""
        for link in self.links:
            for dev in link.shaped_devs:
                kinds = qdisc_kinds(link.node_pid, dev)
                want = set()
                if link.forwarding == "tc-mirred":
                    if link.direction.bw_mbps is not None:
                        want.add("htb")
                    if link.backend == "netem":
                        want.add("netem")
                if not want <= set(kinds):
                    raise LinkError(f"WAN link {link.index}: {dev} has qdiscs {kinds}, "
                                    f"expected {sorted(want)}")
            if link.relay_proc is not None and link.relay_proc.poll() is not None:
                raise LinkError(f"delay line of WAN link {link.index} exited "
                                f"({link.relay_proc.returncode})")

    def host(self, name: str) -> Any:
        return self.net.get(name)

    def add_host(self, name: str, ip: str, mac: str, switch: str) -> Any:
        """A host added to the running network (a VM), plugged into ``switch`` and configured
        like the others (offloads, MTU, TCP buffers); registered so teardown and
        ``wanmig clean`` remove it."""
        if name in self.net.nameToNode:
            raise ValueError(f"a node named {name!r} exists already")
        sw = self.net.get(switch)
        assert self.registry is not None
        self.registry.update(nodes=[*self.registry.data["nodes"], name])
        host = self.net.addHost(name, ip=f"{ip}/{PREFIX_LEN}", mac=mac)
        self.registry.add_processes([host.pid])
        self.registry.update(netns=sorted({*self.registry.data["netns"],
                                           *filter(None, [netns_inode(host.pid)])}))
        link = self.net.addLink(host, sw)
        host_intf, sw_intf = (link.intf1, link.intf2) if link.intf1.node is host \
            else (link.intf2, link.intf1)
        host_intf.setMAC(mac)
        host_intf.setIP(ip, PREFIX_LEN)
        host.cmd("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                 "net.ipv6.conf.default.disable_ipv6=1")
        buf = tcp_buffer_bytes(self.spec)
        self._node_checked(host, f"sysctl -qw net.ipv4.tcp_rmem='4096 131072 {buf}' "
                                 f"net.ipv4.tcp_wmem='4096 65536 {buf}'")
        self.configure_new_link(host, host_intf, sw_intf)
        sw.attach(sw_intf)
        log.info("added host %s (%s, %s) at %s", name, mac, ip, switch)
        return host

    def record(self) -> dict:
        return {"topology": self.spec.name, "link_backend": self.choice.link_backend,
                "ovs_datapath": self.choice.ovs_datapath, "stp": self.stp,
                "tcp_buffer_max": tcp_buffer_bytes(self.spec),
                "hypervisor_tcp_slow_start_after_idle": 0,
                "ovs_port_rcvbuf_bytes": (self.port_rcvbuf or {}).get("bytes"),
                "ovs_userspace_tso": self.choice.userspace_tso,
                "fabric_offloads": self.choice.offloads,
                "control": self.control.record() if self.control else None,
                "wan": [link.record() for link in self.links]}
