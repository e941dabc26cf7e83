"""Changing a running delay line: the WAN faults a run injects (an outage, a loss burst, an RTT
step) without restarting the relay, whose held frames a restart would drop.

Protocol: the relay started with ``--control PATH`` binds a Unix datagram socket there (a path,
not an abstract name: the relay runs in the WAN node's network namespace, which abstract names
do not cross). One JSON object per datagram, every key optional::

    {"cut": true}          drop every frame that arrives, both directions (an outage)
    {"cut": false}         forward again
    {"loss_pct": 20.0}     one-way random loss per direction, in percent (null: as configured)
    {"delay_ms": 60.0}     one-way delay per direction (null: as configured)

The relay applies the whole message or none of it, and answers the sender (when it bound an
address) with the state it now runs with, ``{"ok": true, "cut": ..., "loss_pct": ...,
"delay_ms": ...}``, or ``{"ok": false, "error": "..."}``. Frames already held in the delay keep
the release time they were given; a frame dropped while cut is counted (``drop_fault``).

``LinkControl`` is the relay's side (pure: it changes the two directions' ``LinkModel``);
``send_control`` the caller's; ``wan_fault_fields`` turns a link's round-trip figures into the
per-direction values of a message, as ``topologies.shaping`` does for the configured ones.
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from topologies.linkmodel import LinkModel

KEYS = ("cut", "loss_pct", "delay_ms")
MAX_MESSAGE = 4096
MAX_DELAY_MS = 10_000.0


class ControlError(ValueError):
    """A control message that cannot be applied (the message says why)."""


def parse_control(data: bytes) -> dict:
    """The fields of one datagram, checked; ControlError for anything else."""
    if len(data) > MAX_MESSAGE:
        raise ControlError(f"message of {len(data)} bytes, expected at most {MAX_MESSAGE}")
    try:
        fields = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ControlError(f"not a JSON object: {exc}") from None
    if not isinstance(fields, dict) or not fields:
        raise ControlError(f"got {str(fields)[:80]!r}, expected a JSON object with some of "
                           f"{', '.join(KEYS)}")
    unknown = sorted(set(fields) - set(KEYS))
    if unknown:
        raise ControlError(f"unknown keys {unknown}, expected some of {', '.join(KEYS)}")
    if "cut" in fields and not isinstance(fields["cut"], bool):
        raise ControlError(f"cut: got {fields['cut']!r}, expected true or false")
    for key, top in (("loss_pct", 100.0), ("delay_ms", MAX_DELAY_MS)):
        value = fields.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or not 0 <= value <= top \
                or key == "loss_pct" and value >= 100:
            limit = "below 100" if key == "loss_pct" else f"at most {top:g}"
            raise ControlError(f"{key}: got {value!r}, expected a number from 0, {limit}, "
                               "or null (as configured)")
    return fields


class LinkControl:
    """The runtime state of both directions of one relay. State: ``cut`` (every arriving frame
    dropped); the models' ``delay_s`` and ``loss``, changed in place; ``base`` what they were
    configured with, restored by a null."""

    def __init__(self, models: Sequence[LinkModel]) -> None:
        self.models = list(models)
        self.base = [(m.delay_s, m.loss) for m in self.models]
        self.cut = False

    def apply(self, fields: Mapping[str, Any]) -> dict:
        """Apply checked fields (``parse_control``); returns ``state()``."""
        if "cut" in fields:
            self.cut = bool(fields["cut"])
        for model, (delay_s, loss) in zip(self.models, self.base, strict=True):
            if "delay_ms" in fields:
                d = fields["delay_ms"]
                model.delay_s = delay_s if d is None else d / 1e3
            if "loss_pct" in fields:
                p = fields["loss_pct"]
                model.loss = loss if p is None else p / 100.0
        return self.state()

    def state(self) -> dict:
        m = self.models[0]
        return {"cut": self.cut, "delay_ms": m.delay_s * 1e3, "loss_pct": m.loss * 100.0}

    def handle(self, data: bytes) -> dict:
        """The answer to one datagram (applied, or refused with the reason)."""
        try:
            return {"ok": True, **self.apply(parse_control(data))}
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}


def one_way_loss_pct(round_trip_pct: float) -> float:
    """Per-direction loss giving ``round_trip_pct`` over a round trip (``shaping.split_link``)."""
    return (1.0 - math.sqrt(1.0 - round_trip_pct / 100.0)) * 100.0


def wan_fault_fields(relay_delay_ms: float, configured_rtt_ms: float, *,
                     rtt_ms: float | None = None, loss_pct: float | None = None) -> dict:
    """Control fields for a link whose relay runs ``relay_delay_ms`` each way for a configured
    RTT of ``configured_rtt_ms``: ``rtt_ms`` a new round-trip time (the fabric's own share,
    compensated at start-up, stays compensated), ``loss_pct`` a round-trip loss."""
    fields: dict[str, Any] = {}
    if rtt_ms is not None:
        fields["delay_ms"] = max(0.0, relay_delay_ms + (rtt_ms - configured_rtt_ms) / 2.0)
    if loss_pct is not None:
        fields["loss_pct"] = one_way_loss_pct(loss_pct)
    return fields


def send_control(path: str | os.PathLike, fields: Mapping[str, Any],
                 timeout_s: float = 2.0) -> dict:
    """Send one message to the relay controlled at ``path`` and return its answer; ControlError
    when it refused, OSError when it did not answer in time."""
    with tempfile.TemporaryDirectory(prefix="wanmig-ctl-") as tmp:
        me = os.path.join(tmp, "c")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(me)
            sock.settimeout(timeout_s)
            sock.sendto(json.dumps(dict(fields)).encode(), os.fspath(path))
            data, _ = sock.recvfrom(MAX_MESSAGE)
    answer = json.loads(data)
    if not answer.get("ok"):
        raise ControlError(f"the delay line refused {dict(fields)}: {answer.get('error')}")
    return answer
