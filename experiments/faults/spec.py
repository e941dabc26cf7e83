"""The fault schedule of an experiment (``faults:``), validated with the rest of the spec.

Each fault is a kind, when it fires and what it does; every key but ``kind`` and the trigger has
a default, so ``faults[0].kind`` can be swept on its own (``experiments/faults.yaml``)::

    faults:
      - kind: wan-outage        # every frame on the WAN link dropped, both ways, for duration_s
        phase: live             # when: a migration phase (live, stop-copy, verify, switchover)
        round: 1                #   live only: the round at whose start it fires (default 1)
        # at_s: 3.0             # ...or seconds after the migration started (not with phase)
        duration_s: 2           # default 2
        link: null              # a WAN link, 1-based; default the first on the migration path
      - {kind: loss-burst, phase: live, duration_s: 2, loss_pct: 20}   # round-trip loss
      - {kind: rtt-step, phase: live, rtt_ms: 150, duration_s: null}   # null: to the end
      - {kind: kill-source, phase: stop-copy}         # the source migrator, SIGKILL
      - {kind: kill-destination, phase: stop-copy}    # the destination migrator, SIGKILL
      - {kind: cut-destination, phase: live, duration_s: null}  # its hypervisor's cable down
      - {kind: restart-controller, phase: live, duration_s: 1}  # SIGKILL, down this long

When the phases begin, as the runner learns them from the migrator (``experiments.faults
.trigger``): live round n when round n-1's row arrives (its PROGRESS line), stop-copy at the
pause (PAUSED), verify when the stop-copy row arrives, switchover when the destination has
verified the image (VERIFIED). Why the target is part of the kind (``kill-source``, not ``kill``
with ``target: source``): one grid key then sweeps every fault.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Any

from ground.config import ConfigError, Section, join
from topologies.plan import wan_path
from topologies.spec import MAX_RTT_MS, TopologySpec

WAN_KINDS = ("wan-outage", "loss-burst", "rtt-step")
KILL_KINDS = ("kill-source", "kill-destination")
KINDS = (*WAN_KINDS, *KILL_KINDS, "cut-destination", "restart-controller")
PHASES = ("live", "stop-copy", "verify", "switchover")
TRIGGER_KEYS = ("kind", "at_s", "phase", "round")
# The keys of each kind besides the trigger's.
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "wan-outage": ("duration_s", "link"),
    "loss-burst": ("duration_s", "loss_pct", "link"),
    "rtt-step": ("rtt_ms", "duration_s", "link"),
    "kill-source": (),
    "kill-destination": (),
    "cut-destination": ("duration_s",),
    "restart-controller": ("duration_s",),
}
MAX_FAULTS = 20
MAX_AT_S = 3600.0
MAX_DURATION_S = 3600.0
MAX_CONTROLLER_DOWN_S = 60.0
DEFAULT_DURATION_S = {"wan-outage": 2.0, "loss-burst": 2.0, "restart-controller": 1.0}
DEFAULT_LOSS_PCT = 20.0
MAX_FAULT_LOSS_PCT = 99.0


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    at_s: float | None          # seconds after the migration started; or
    phase: str | None           # the migration phase it fires at
    round: int | None           # with phase live: the round at whose start it fires
    duration_s: float | None    # how long it lasts (None: to the end of the run; kills: None)
    link: int | None = None     # WAN kinds: the link (1-based)
    loss_pct: float | None = None   # loss-burst: round-trip loss
    rtt_ms: float | None = None     # rtt-step: the new round-trip time

    @property
    def trigger(self) -> str:
        """When it fires, in words: ``live round 1``, ``stop-copy``, ``3 s``."""
        if self.at_s is not None:
            return f"{self.at_s:g} s"
        return f"live round {self.round}" if self.phase == "live" else str(self.phase)


def _trigger(sec: Section) -> tuple[float | None, str | None, int | None]:
    if sec.has("at_s") and (sec.has("phase") or sec.has("round")):
        key = "phase" if sec.has("phase") else "round"
        raise ConfigError(sec.where(key), sec.data[key],
                          "nothing here: the fault fires at at_s already (one trigger only)")
    if sec.has("at_s"):
        return sec.number("at_s", minimum=0.0, maximum=MAX_AT_S), None, None
    if not sec.has("phase") and not sec.has("round"):
        raise ConfigError(sec.where("phase"), None,
                          f"a trigger: phase (one of {', '.join(PHASES)}, with round for live) "
                          f"or at_s (seconds after the migration started)")
    phase = sec.string("phase", "live", choices=PHASES)
    if phase != "live":
        if sec.has("round"):
            raise ConfigError(sec.where("round"), sec.data["round"],
                              f"no round with phase {phase} (rounds number the live phase)")
        return None, phase, None
    rnd = sec.number("round", 1, minimum=1, maximum=10_000, integer=True)
    return None, phase, rnd


def _link(sec: Section, topo: TopologySpec, path_links: list[int]) -> int:
    k = sec.number("link", path_links[0] if path_links else 1, minimum=1,
                   maximum=len(topo.wan), integer=True)
    w = topo.wan[k - 1]
    if w.rtt_ms == 0 and w.loss_pct == 0 and w.jitter_ms == 0:
        raise ConfigError(sec.where("link"), k,
                          "a WAN link with a delay, loss or jitter: one with none is forwarded "
                          "by the kernel, where no delay line can inject a fault")
    return k


def parse_fault(data: Any, path: str, topo: TopologySpec, path_links: list[int]) -> FaultSpec:
    if not isinstance(data, dict):
        raise ConfigError(path, data, "a fault: a mapping with kind and a trigger")
    kind = data.get("kind")
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(join(path, "kind"), kind, f"one of {', '.join(KINDS)}{hint}")
    sec = Section(data, path, (*TRIGGER_KEYS, *KIND_KEYS[kind]))
    at_s, phase, rnd = _trigger(sec)
    duration: float | None = None
    if "duration_s" in KIND_KEYS[kind]:
        top = MAX_CONTROLLER_DOWN_S if kind == "restart-controller" else MAX_DURATION_S
        low = {"minimum": 0.0} if kind == "restart-controller" else {"above": 0.0}
        duration = sec.number("duration_s", DEFAULT_DURATION_S.get(kind), maximum=top,
                              optional=True, **low)
    link = loss = rtt = None
    if kind in WAN_KINDS:
        link = _link(sec, topo, path_links)
    if kind == "loss-burst":
        loss = sec.number("loss_pct", DEFAULT_LOSS_PCT, above=0.0, maximum=MAX_FAULT_LOSS_PCT)
    if kind == "rtt-step":
        assert link is not None
        rtt = sec.number("rtt_ms", 2 * topo.wan[link - 1].rtt_ms, minimum=0.0,
                         maximum=MAX_RTT_MS)
    return FaultSpec(kind=kind, at_s=at_s, phase=phase, round=rnd, duration_s=duration,
                     link=link, loss_pct=loss, rtt_ms=rtt)


def parse_faults(data: Any, path: str, topo: TopologySpec, source_site: str,
                 destination_site: str) -> tuple[FaultSpec, ...]:
    """The ``faults:`` list (None: no faults), every entry checked against the topology."""
    if data is None:
        return ()
    if isinstance(data, (str, bytes, dict)) or not isinstance(data, (list, tuple)) \
            or len(data) > MAX_FAULTS:
        raise ConfigError(path, data, f"a list of at most {MAX_FAULTS} faults")
    links = wan_path(topo, source_site, destination_site)
    return tuple(parse_fault(f, join(path, i), topo, links) for i, f in enumerate(data))


def faults_dict(faults: tuple[FaultSpec, ...]) -> list[dict]:
    """The faults as written to config.yaml: parsing it back gives the same faults."""
    out = []
    for f in faults:
        keys = ("kind", *(("at_s",) if f.at_s is not None else ("phase",)),
                *(("round",) if f.phase == "live" else ()), *KIND_KEYS[f.kind])
        d = asdict(f)
        out.append({k: d[k] for k in keys})
    return out
