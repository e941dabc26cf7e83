"""The WAN links' throughput over a fleet run, as the links carried it: every 0.5 s the
transmit byte counters of each link's two shaped devices (one per direction) are read from
``/proc/<pid>/net/dev`` of the link's node (its network namespace, read from outside: no
process is started per sample), and the difference becomes Mbit/s."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("wanmig.fleet")

PERIOD_S = 0.5


def tx_bytes(pid: int, devs: list[str]) -> dict[str, int]:
    """Transmit byte counters of ``devs`` in the namespace of ``pid``."""
    out = {}
    for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]:
        name, _, fields = line.partition(":")
        if name.strip() in devs:
            out[name.strip()] = int(fields.split()[8])
    return out


class WanSampler:
    """A thread sampling every WAN link of ``net`` until ``stop``; ``rows``: t (time.time()),
    link (1-based), direction, mbps."""

    def __init__(self, net: Any, period_s: float = PERIOD_S) -> None:
        self.links = [(i, link.node_pid, list(link.shaped_devs))
                      for i, link in enumerate(net.links, start=1)
                      if link.node_pid and len(link.shaped_devs) == 2]
        self.period_s = period_s
        self.rows: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wan-sampler", daemon=True)

    def start(self) -> WanSampler:
        if not self.links:
            log.warning("no WAN link counters to sample: WAN utilisation is not measured")
        self._thread.start()
        return self

    def _read(self) -> dict[tuple[int, str], int]:
        out = {}
        for i, pid, devs in self.links:
            got = tx_bytes(pid, devs)
            for direction, dev in zip(("a->b", "b->a"), devs, strict=True):
                if dev in got:
                    out[(i, direction)] = got[dev]
        return out

    def _run(self) -> None:
        try:
            last, t_last = self._read(), time.time()
            while not self._stop.wait(self.period_s):
                now, t = self._read(), time.time()
                for key, value in now.items():
                    if key in last:
                        self.rows.append({"t": t, "link": key[0], "direction": key[1],
                                          "mbps": (value - last[key]) * 8 / (t - t_last) / 1e6})
                last, t_last = now, t
        except (OSError, ValueError, IndexError) as exc:    # the link's node went away
            log.warning("WAN sampling stopped: %s", exc)

    def stop(self) -> list[dict]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        return self.rows
