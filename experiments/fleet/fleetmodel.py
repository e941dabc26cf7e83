"""The fleet's predicted makespan: concurrent migrations sharing the WAN links' bandwidth.

Why: concurrency is not free on a WAN. Two pre-copy migrations sharing a link each get half of
it, so each round lasts twice as long and the guests dirty more pages meanwhile; the fleet may
well finish later than one at a time. This model says by how much, from the single-migration
model, with the same ``Scheduler`` (ordering and limits) the real run uses.

Model (fluid processor sharing, event-driven, deterministic):

* a move is queued at ``release_s[move.seq]`` and started when the scheduler says so;
* at any moment each running move gets, on each link it crosses, the link's bandwidth divided
  by the number of running moves on that link, and its bandwidth is the smallest of these (a
  move inside a site gets ``local_bandwidth_Bps``, not shared);
* a move alone at bandwidth ``b`` takes ``time_at(move, b)`` seconds; at a share that changes
  it progresses at the rate ``1 / time_at(move, b_now)`` of its whole. This is the fluid
  approximation of the pre-copy model: at a smaller share rounds last longer, more dirty pages
  are re-sent, and ``time_at`` (``model_time_at``) captures that;
* the clock jumps to the next finish or release, and the shares are recomputed there.

``lower_bound_s`` is a bound nothing can beat (for ``time_at`` non-increasing in the bandwidth
and each move's ``cost.bytes_on_wire`` at most what it sends at any bandwidth up to its path's,
as for a cost the single-migration model predicted on that path alone): the larger of each
link's bytes at its full bandwidth after the earliest release of its moves, and each move
alone on its path after its release. ``makespan_s`` is what the model predicts.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from experiments.fleet.scheduler import Limits, LinksOf, Scheduler
from experiments.fleet.types import Move
from migrator.core.model import ModelInputs, predict

TimeAt = Callable[[Move, float], float]
REL_EPS = 1e-12       # moves whose finishes are this close (relative) finish in the same event


@dataclass(frozen=True)
class FleetPrediction:
    """``rows``: per move, in ``seq`` order, ``{seq, vm, start_s, end_s, min_share_Bps,
    max_share_Bps}`` (the smallest and largest bandwidth share it had while running)."""

    makespan_s: float
    rows: list[dict[str, Any]]
    lower_bound_s: float


def model_time_at(inputs: ModelInputs) -> Callable[[float], float]:
    """``b -> `` the single-migration model's total time for ``inputs`` at bandwidth ``b``."""
    def time_at(bandwidth_Bps: float) -> float:  # noqa: N803 - unit suffix
        return predict(dataclasses.replace(inputs, bandwidth_Bps=bandwidth_Bps)).total_time_s
    return time_at


class _Path:
    """Each move's links and its full (unshared) bandwidth, checked once."""

    def __init__(self, moves: Sequence[Move], links_of: LinksOf,
                 link_bw: Mapping[int, float], local_bw: float | None) -> None:
        self.links: dict[int, tuple[int, ...]] = {}
        self.full: dict[int, float] = {}
        for m in moves:
            crossed = tuple(links_of(m.source, m.destination))
            for k in crossed:
                if k not in link_bw or not link_bw[k] > 0:
                    raise ValueError(f"move {m.seq} of {m.vm} crosses link {k}, which has no "
                                     f"positive bandwidth in link_bandwidth_Bps")
            if not crossed and local_bw is None:
                raise ValueError(f"move {m.seq} of {m.vm} stays inside a site "
                                 f"({m.source} -> {m.destination}) and local_bandwidth_Bps "
                                 "is None")
            self.links[m.seq] = crossed
            self.full[m.seq] = min(link_bw[k] for k in crossed) if crossed else float(local_bw)


def _duration(time_at: TimeAt, move: Move, bandwidth: float) -> float:
    t = time_at(move, bandwidth)
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"time_at(move {move.seq} of {move.vm}, {bandwidth:g} B/s) = {t!r}: "
                         "expected a positive finite time")
    return t


def lower_bound(moves: Sequence[Move], release_s: Mapping[int, float], path: _Path,
                link_bw: Mapping[int, float], time_at: TimeAt) -> float:
    """The bound of the module docstring."""
    best = 0.0
    per_link: dict[int, list[Move]] = {}
    for m in moves:
        best = max(best, release_s[m.seq] + _duration(time_at, m, path.full[m.seq]))
        for k in path.links[m.seq]:
            per_link.setdefault(k, []).append(m)
    for k, on in per_link.items():
        volume = sum(m.cost.bytes_on_wire for m in on) / link_bw[k]
        best = max(best, min(release_s[m.seq] for m in on) + volume)
    return best


def simulate(moves: Sequence[Move], release_s: Mapping[int, float], limits: Limits,
             order: str, links_of: LinksOf, link_bandwidth_Bps: Mapping[int, float],  # noqa: N803
             time_at: TimeAt, local_bandwidth_Bps: float | None = None,  # noqa: N803
             ) -> FleetPrediction:
    """Run the model of the module docstring; ``release_s`` must hold every move's ``seq``."""
    seqs = [m.seq for m in moves]
    if len(set(seqs)) != len(seqs):
        raise ValueError(f"moves with the same seq: {sorted(s for s in seqs if seqs.count(s) > 1)}")
    for m in moves:
        r = release_s.get(m.seq)
        if r is None or not (r >= 0 and math.isfinite(r)):
            raise ValueError(f"release_s[{m.seq}] (move of {m.vm}) = {r!r}: expected a finite "
                             "time >= 0")
    path = _Path(moves, links_of, link_bandwidth_Bps, local_bandwidth_Bps)
    sched = Scheduler(limits, order, links_of)
    releases = sorted(moves, key=lambda m: (release_s[m.seq], m.seq))
    rows = {m.seq: {"seq": m.seq, "vm": m.vm, "start_s": None, "end_s": None,
                    "min_share_Bps": math.inf, "max_share_Bps": 0.0} for m in moves}
    done: dict[int, float] = {}                 # seq -> fraction done, for running moves
    now, nxt = 0.0, 0
    while nxt < len(releases) or not sched.idle:
        while nxt < len(releases) and release_s[releases[nxt].seq] <= now:
            sched.submit(releases[nxt])
            nxt += 1
        for m in sched.startable():
            done[m.seq] = 0.0
            rows[m.seq]["start_s"] = now
        running = sched.running
        if not running:                         # nothing to do until the next release
            now = release_s[releases[nxt].seq]
            continue
        on_link = Counter(k for m in running for k in path.links[m.seq])
        rate: dict[int, float] = {}
        for m in running:
            crossed = path.links[m.seq]
            share = (min(link_bandwidth_Bps[k] / on_link[k] for k in crossed) if crossed
                     else path.full[m.seq])
            row = rows[m.seq]
            row["min_share_Bps"] = min(row["min_share_Bps"], share)
            row["max_share_Bps"] = max(row["max_share_Bps"], share)
            rate[m.seq] = 1.0 / _duration(time_at, m, share)
        left = {m.seq: (1.0 - done[m.seq]) / rate[m.seq] for m in running}
        step = min(left.values())
        if nxt < len(releases):
            step = min(step, release_s[releases[nxt].seq] - now)
        now += step
        for m in running:
            if left[m.seq] <= step + REL_EPS * max(now, 1.0):
                sched.finished(m)
                del done[m.seq]
                rows[m.seq]["end_s"] = now
            else:
                done[m.seq] += rate[m.seq] * step
    out = [rows[s] for s in sorted(rows)]
    makespan = max((r["end_s"] for r in out), default=0.0)
    return FleetPrediction(
        makespan_s=makespan, rows=out,
        lower_bound_s=lower_bound(moves, release_s, path, link_bandwidth_Bps, time_at))
