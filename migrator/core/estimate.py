"""The pre-copy engine's estimates, as pure functions of what it measured.

Rates: ``rate_Bps`` is the stream's transfer rate in wire bytes/s, ``raw_Bps`` the same in guest
bytes/s (times the compression ratio); ``dirty_Bps`` the distinct bytes the guest dirtied per
second over the round just ended; ``backlog_bytes`` what was handed to the transport and not yet
acknowledged.
"""

from __future__ import annotations


def expected_downtime(dirty_bytes: float, dirty_Bps: float, backlog_bytes: float,  # noqa: N803
                      rate_Bps: float, raw_Bps: float, rtt_s: float) -> float:  # noqa: N803
    """The stop-and-copy time if the guest were paused once the bytes in flight drained (it
    runs meanwhile): the dirty pages and those dirtied during the drain, at the raw rate, then
    one RTT for the acknowledgment."""
    drain_s = backlog_bytes / rate_Bps
    return (dirty_bytes + dirty_Bps * drain_s) / raw_Bps + rtt_s


def halves(dirty_bytes: float, dirty_Bps: float, raw_Bps: float,  # noqa: N803
           shortest_round_s: float) -> bool:
    """Would one more round at least halve what the final copy sends? It lasts what its pages
    take at the raw rate (``shortest_round_s`` at least); the guest dirties at the same rate
    meanwhile. A long round 0 over a big idle guest leaves hundreds of pages that a round of a
    few ms takes down to a handful; at half the link's rate or more, another round does not
    pay."""
    next_s = max(dirty_bytes / raw_Bps, shortest_round_s)
    return dirty_Bps * next_s < 0.5 * dirty_bytes


def eta(dirty_bytes: float, dirty_Bps: float, raw_Bps: float,  # noqa: N803
        rtt_s: float) -> float | None:
    """Seconds to completion if the dirty set keeps shrinking geometrically, else None."""
    q = dirty_Bps / raw_Bps
    if q >= 1.0:
        return None
    return dirty_bytes / (1.0 - q) / raw_Bps + rtt_s
