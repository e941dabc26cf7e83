"""The faults and the invariants of a run as report.md shows them (from metrics.json only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ground.table import markdown


def _s(value: Any, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def fault_lines(metrics: Mapping[str, Any]) -> list[str]:
    """A ``## Faults`` section (empty when the run injected none)."""
    faults = metrics.get("faults")
    inv = metrics.get("invariants")
    if not faults or not isinstance(inv, Mapping):
        return []
    rows = [(str(f.get("index")), str(f.get("kind")), str(f.get("at")),
             _s(f.get("fired_at"), "{:.2f} s") if f.get("fired_at") is not None
             else "never (not reached)",
             _s(f.get("ended_at"), "{:.2f} s"), str(f.get("error") or ""))
            for f in faults]
    lost = inv.get("lost_writes")
    checks = [
        ("the VM runs at exactly one site", inv.get("one_site") is True,
         f"at {inv.get('vm_site')}" if inv.get("one_site")
         else "; ".join(inv.get("one_site_why") or ()) or "unknown"),
        ("no split brain", inv.get("split_brain") is False, ""),
        ("every acknowledged write reads back", lost == 0,
         f"{lost} of {inv.get('acked_writes')} lost" if lost is not None
         else "no client record"),
        ("the clients reach it again", inv.get("reachable") is True,
         f"{_s(inv.get('final_reply_frac'), '{:.0%}')} of the last second's probes answered"),
        ("nothing left behind", not inv.get("leftovers"), ", ".join(inv.get("leftovers") or ())),
    ]
    return ["## Faults", "",
            "Times are from the start of the migration (the source migrator's STARTED).", "",
            *markdown(("#", "kind", "at", "fired", "ended", "error"), rows), "",
            f"Invariants: **{'held' if inv.get('held') else 'BROKEN'}**", "",
            *markdown(("invariant", "held", "detail"),
                    [(c, "yes" if ok else "NO", d) for c, ok, d in checks]), ""]


def invariants_cell(rows: list[Mapping[str, Any]]) -> str:
    """A sweep table's cell for the runs of one combination (summary.csv's rows): ``held``,
    or what broke."""
    broken = []
    for r in rows:
        if r.get("invariants_held") is True:
            continue
        if r.get("invariants_held") is None:    # the run failed before the VM existed
            broken.append("not checked")
            continue
        what = [w for w, bad in (("not one site", r.get("one_site") is not True),
                                 ("split brain", r.get("split_brain") is True),
                                 (f"{r.get('lost_writes')} lost writes",
                                  r.get("lost_writes") != 0),
                                 ("unreachable", r.get("reachable") is not True),
                                 (f"{r.get('leftovers')} leftovers", bool(r.get("leftovers"))))
                if bad]
        broken.append(", ".join(what) or "unknown")
    return "held" if not broken else "NO: " + "; ".join(broken)
