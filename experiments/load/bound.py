"""Whether a run was testbed-bound: a pure judgement of the load samples.

A sample covers ``[t0, t1]`` and says how many of the machine's cores were idle in it. Over a
window (the migration: from its start to the VM's resume), the run is **testbed-bound** when
the machine had less than ``IDLE_FLOOR`` (10 %) of its cores idle for more than
``BOUND_SHARE`` (a fifth) of the window: the migration then shared a saturated machine with the
testbed's own machinery, and its figures are partly the testbed's. Samples are weighed by
how much of them lies inside the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

IDLE_FLOOR = 0.10
BOUND_SHARE = 0.2


@dataclass(frozen=True)
class Sample:
    t0: float
    t1: float
    idle_cores: float
    parts: dict[str, float]         # cores used by each part over the sample


# The figures of ``judge`` a benchmark's row carries beside its own.
ROW_FIGURES = ("testbed_bound", "testbed_cpu_idle_min", "testbed_cpu")


def judge(samples: Sequence[Sample], t0: float, t1: float, cores: int) -> dict:
    """The window's figures: ``testbed_cpu_idle_min`` (the least idle share of the machine in
    a sample that overlaps it), ``testbed_bound_share`` (the share of it spent below the
    floor), ``testbed_bound`` and ``testbed_cpu`` (mean cores of each part); None figures
    where no sample overlaps the window."""
    span = t1 - t0
    inside = [(s, max(0.0, min(s.t1, t1) - max(s.t0, t0))) for s in samples]
    inside = [(s, w) for s, w in inside if w > 0]
    if span <= 0 or not inside:
        return {"testbed_cpu_idle_min": None, "testbed_bound_share": None,
                "testbed_bound": None, "testbed_cpu": None, "testbed_cpu_cores": cores,
                "testbed_window_s": max(span, 0.0)}
    covered = sum(w for _, w in inside)
    below = sum(w for s, w in inside if s.idle_cores < IDLE_FLOOR * cores)
    share = below / covered
    parts: dict[str, float] = {}
    for s, w in inside:
        for part, used in s.parts.items():
            parts[part] = parts.get(part, 0.0) + used * w / covered
    return {"testbed_cpu_idle_min": min(s.idle_cores for s, _ in inside) / cores,
            "testbed_bound_share": share, "testbed_bound": share > BOUND_SHARE,
            "testbed_cpu": {p: round(v, 4) for p, v in sorted(parts.items())},
            "testbed_cpu_cores": cores, "testbed_window_s": span}


def warning(figures: dict) -> str | None:
    """The sentence a report leads with when the run was testbed-bound, else None."""
    if not figures.get("testbed_bound"):
        return None
    top = sorted((figures.get("testbed_cpu") or {}).items(), key=lambda kv: -kv[1])[:3]
    used = ", ".join(f"{p} {c:.2f}" for p, c in top)
    return (f"**Testbed-bound**: during {100 * figures['testbed_bound_share']:.0f} % of the "
            f"migration less than {100 * IDLE_FLOOR:.0f} % of the machine's "
            f"{figures['testbed_cpu_cores']} cores was idle (least idle "
            f"{100 * figures['testbed_cpu_idle_min']:.0f} %; cores used: {used}): these "
            "figures are partly the testbed's own.")


def migration_window(times: dict, last_t: float | None = None) -> tuple[float, float] | None:
    """The migration's span from a run's times: from the migrators' start (a fleet's first
    move) to the VM's resume (the last move's end); to ``last_t`` when it never resumed."""
    start = next((times[k] for k in ("fleet_start_t", "migration_start_t", "rounds_start_t",
                                      "paused_t") if times.get(k) is not None), None)
    end = next((times[k] for k in ("fleet_end_t", "resumed_t") if times.get(k) is not None),
               last_t)
    if start is None or end is None or end <= start:
        return None
    return start, end
