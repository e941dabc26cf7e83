"""Is the WAN link what was asked for? Measured across the live network, judged by one rule.

Tolerances (the project's targets):
- RTT: the mean of the pings within ``max(1 ms, 2 %)`` of ``rtt_ms`` (plus three standard errors
  of the mean when the link has jitter);
- loss: zero when none was asked; else within four binomial standard deviations of ``loss_pct``;
- goodput (only judged on a loss-free shaped link): at least ``min_goodput_frac`` of ``bw_mbps``
  and not above ``bw_mbps`` by more than 2 % (a link faster than asked is not shaped).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from topologies.measure import iperf, ping
from topologies.spec import WanLinkSpec

DEFAULT_MIN_GOODPUT_FRAC = 0.8
GOODPUT_CEIL_FRAC = 1.02


@dataclass
class LinkCheck:
    link: int
    src: str
    dst: str
    rtt_ms_configured: float
    rtt_ms_measured: float
    rtt_min_ms: float
    rtt_max_ms: float
    rtt_mdev_ms: float
    rtt_tolerance_ms: float
    ping_samples: int
    loss_pct_configured: float
    loss_pct_measured: float
    bw_mbps: float | None
    goodput_mbps: float | None
    retransmits: int | None
    backend: str
    datapath: str
    ok: bool = False
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def rtt_tolerance_ms(rtt_ms: float, jitter_ms: float = 0.0, samples: int = 1) -> float:
    base = max(1.0, 0.02 * rtt_ms)
    return base + (3 * jitter_ms / math.sqrt(samples) if jitter_ms else 0.0)


def judge(check: LinkCheck, spec: WanLinkSpec, min_goodput_frac: float) -> LinkCheck:
    """Fill ``ok`` and ``problems`` from the measured figures (pure)."""
    problems = []
    err = check.rtt_ms_measured - check.rtt_ms_configured
    if math.isnan(check.rtt_ms_measured):
        problems.append("no ping came back")
    elif abs(err) > check.rtt_tolerance_ms:
        problems.append(f"RTT {check.rtt_ms_measured:.2f} ms, configured "
                        f"{check.rtt_ms_configured:g} ms: off by {err:+.2f} ms, tolerance "
                        f"{check.rtt_tolerance_ms:.2f} ms")
    n = check.ping_samples
    p = spec.loss_pct / 100.0
    if p == 0 and check.loss_pct_measured > 0:
        problems.append(f"{check.loss_pct_measured:.1f} % of pings lost on a link without loss")
    elif p > 0 and n:
        allowed = 100.0 * (4 * math.sqrt(p * (1 - p) / n) + 1.0 / n)
        if abs(check.loss_pct_measured - spec.loss_pct) > allowed:
            problems.append(f"loss {check.loss_pct_measured:.2f} %, configured "
                            f"{spec.loss_pct:g} % (tolerance {allowed:.2f} points over {n})")
    if check.goodput_mbps is not None and spec.bw_mbps is not None and p == 0:
        lo, hi = min_goodput_frac * spec.bw_mbps, GOODPUT_CEIL_FRAC * spec.bw_mbps
        if not lo <= check.goodput_mbps <= hi:
            problems.append(f"goodput {check.goodput_mbps:.1f} Mbit/s outside "
                            f"[{lo:.1f}, {hi:.1f}] for a {spec.bw_mbps:g} Mbit/s link")
    check.problems = problems
    check.ok = not problems
    return check


def run_linkcheck(net: Any, link_index: int = 1, pings: int = 20, iperf_s: float = 8.0,
                  omit_s: float = 3.0, streams: int = 1,
                  min_goodput_frac: float = DEFAULT_MIN_GOODPUT_FRAC,
                  goodput: bool = True) -> LinkCheck:
    """Ping and iperf3 between the first hypervisors of the link's two sites."""
    spec = net.spec.wan[link_index - 1]
    src = net.plan.hosts_at(spec.a, "hypervisor")[0]
    dst = net.plan.hosts_at(spec.b, "hypervisor")[0]
    a, b = net.host(src.name), net.host(dst.name)
    pr = ping(a, dst.ip, pings)
    ip = None
    if goodput:
        ip = iperf(a, b, dst.ip, iperf_s, omit_s, streams)
    check = LinkCheck(
        link=link_index, src=src.name, dst=dst.name,
        rtt_ms_configured=spec.rtt_ms, rtt_ms_measured=pr.avg_ms, rtt_min_ms=pr.min_ms,
        rtt_max_ms=pr.max_ms, rtt_mdev_ms=pr.mdev_ms,
        rtt_tolerance_ms=rtt_tolerance_ms(spec.rtt_ms, spec.jitter_ms, max(1, pr.received)),
        ping_samples=pr.sent, loss_pct_configured=spec.loss_pct, loss_pct_measured=pr.loss_pct,
        bw_mbps=spec.bw_mbps, goodput_mbps=ip.goodput_mbps if ip else None,
        retransmits=ip.retransmits if ip else None,
        backend=net.links[link_index - 1].backend, datapath=net.choice.ovs_datapath)
    return judge(check, spec, min_goodput_frac)
