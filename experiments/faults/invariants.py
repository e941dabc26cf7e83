"""What must hold after a run, whatever was injected: pure judgements of the evidence the run
gathered (``experiments.faults.evidence``) and of the clients' records.

* **one site**: the VM runs at exactly one site. The guest process is running (not paused, not
  gone) on the memory of one end; exactly one of the VM's cables is up; the site of that cable,
  the site the guest says it runs at, the switch where the controller last saw its MAC and the
  site that answered the clients' last probe all agree (a witness that saw nothing, e.g. a
  controller that never relearnt it, does not count against it). **Split brain**: the guest
  runs on the destination's copy although the source never had the destination's ACK (it
  resumed the VM at home meanwhile: what the VM did there is lost).
* **lost writes**: every key-value write the guest acknowledged, read back at the end with its
  value; one not read back equal (missing, another value, no answer, not read) is lost.
* **reachable**: the clients reach the VM again: a probe sent after the last fault ended (and
  the migration with it) was answered, and at least half of the last ``FINAL_WINDOW_S`` of
  probes were.
* **leftovers**: nothing of the run is left on the machine once it is torn down.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from experiments.clients import READBACK_OP
from experiments.metrics import Probe

FINAL_WINDOW_S = 1.0
MIN_FINAL_REPLY_FRAC = 0.5


def one_site(evidence: Mapping[str, Any], last_reply_site: str | None) -> dict:
    """``one_site``, ``vm_site``, ``split_brain`` and the reasons (``why``) it fails."""
    guest = evidence.get("guest") or {}
    cables = evidence.get("cables") or []
    up = [c for c in cables if c.get("up")]
    why = []
    if guest.get("state") != "running":
        why.append(f"the guest is {guest.get('state', 'unknown')}, not running")
    if len(up) != 1:
        why.append(f"{len(up)} of the VM's cables are up ({[c.get('site') for c in up]})")
    site = up[0].get("site") if len(up) == 1 else None
    witnesses = {"the guest says": guest.get("location"),
                 "the controller saw": evidence.get("controller_site"),
                 "the clients' last reply came from": last_reply_site}
    for who, seen in witnesses.items():
        if site is not None and seen is not None and seen != site:
            why.append(f"{who} {seen}, the VM's cable is at {site}")
    dest_tag = evidence.get("dest_tag")
    split = bool(dest_tag) and guest.get("tag") == dest_tag \
        and evidence.get("source_outcome") != "completed"
    if split:
        why.append(f"the guest runs on the destination's copy, the source's outcome is "
                   f"{evidence.get('source_outcome')!r} (no ACK)")
    return {"one_site": not why, "vm_site": site if not why else None, "split_brain": split,
            "one_site_why": why}


def lost_writes(kv_rows: Iterable[Mapping[str, Any]] | None) -> dict:
    """Acknowledged writes and those not read back with their value, by what the read-back
    found (``not read``: no READBACK row at all); None when there is no record (kv.csv)."""
    if kv_rows is None:        # the clients wrote no kv.csv: nothing can be vouched for
        return {"acked_writes": None, "lost_writes": None, "lost_by_result": {}}
    rows = list(kv_rows)
    acked = {r["key"] for r in rows if r.get("op") == "PUT" and r.get("result") == "ok"}
    readback = {r["key"]: r.get("result") for r in rows if r.get("op") == READBACK_OP}
    lost = Counter(readback.get(k) or "not read" for k in acked if readback.get(k) != "ok")
    return {"acked_writes": len(acked), "lost_writes": sum(lost.values()),
            "lost_by_result": dict(sorted(lost.items()))}


def reachable(probes: Sequence[Probe], settle_t: float | None) -> dict:
    """Did the clients reach the VM again after ``settle_t`` (the last fault's end), and in
    the last FINAL_WINDOW_S of probing?"""
    if not probes:
        return {"reachable": False, "first_reply_after_settle_t": None,
                "final_reply_frac": None}
    end = max(p.t_send for p in probes)
    final = [p for p in probes if p.t_send >= end - FINAL_WINDOW_S]
    frac = sum(p.t_reply is not None for p in final) / len(final)
    after = [p.t_reply for p in probes if p.t_reply is not None
             and (settle_t is None or p.t_send >= settle_t)]
    first = min(after) if after else None
    return {"reachable": first is not None and frac >= MIN_FINAL_REPLY_FRAC,
            "first_reply_after_settle_t": first, "final_reply_frac": frac}


def settle_time(records: Sequence[Mapping[str, Any]]) -> float | None:
    """When the last fault was over (wall clock): its end, or when it fired if it stayed in
    force until the run's end (undone after the clients stopped, so its end cannot count)."""
    ends = [r["ended_t"] if r.get("ended_by") == "duration" else r["fired_t"]
            for r in records if r.get("fired_t") is not None]
    return max(ends) if ends else None


def last_reply_site(probes: Sequence[Probe]) -> str | None:
    answered = [p for p in probes if p.t_reply is not None]
    return max(answered, key=lambda p: p.t_reply or 0.0).site if answered else None


def judge(evidence: Mapping[str, Any], probes: Sequence[Probe],
          kv_rows: Iterable[Mapping[str, Any]] | None, settle_t: float | None,
          leftovers: Sequence[str]) -> dict:
    """metrics.json's ``invariants``: every judgement, and ``held`` when all four hold."""
    out: dict[str, Any] = {}
    out.update(one_site(evidence, last_reply_site(probes)))
    out.update(lost_writes(kv_rows))
    out.update(reachable(probes, settle_t))
    out["leftovers"] = list(leftovers)
    out["held"] = bool(out["one_site"] and not out["split_brain"] and out["lost_writes"] == 0
                       and out["reachable"] and not out["leftovers"])
    return out
