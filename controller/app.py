"""The os-ken application: a thin OpenFlow 1.3 adapter around controller/fabric.py.

It only translates: OpenFlow events in (switch features, port list, packet-in, barrier reply,
disconnect), ``Fabric`` decisions out (flow-mods, packet-outs, barriers). Settings come from
``SETTINGS``, filled by controller/run.py before os-ken instantiates the app.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
)
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3

from controller import ofmsg
from controller.eventlog import EventLog
from controller.fabric import Fabric
from controller.messages import Message

log = logging.getLogger("wanmig.controller")

SETTINGS: dict[str, Any] = {"events": None, "status": None, "hold_s": 1.0,
                            "probe_interval_s": 1.0}
TICK_S = 0.05


class WanmigController(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.event_log = EventLog(SETTINGS["events"])
        self.fabric = Fabric(hold_s=SETTINGS["hold_s"], emit=self.event_log)
        self.datapaths: dict[int, Any] = {}       # dpid => os-ken Datapath
        self.barriers: dict[tuple[int, int], int] = {}   # (dpid, xid) => fabric tag
        self.lock = threading.Lock()
        self.status_path = SETTINGS["status"]
        self.event_log({"event": "controller_start", "t": time.time(), "pid": os.getpid()})
        self.threads.append(hub.spawn(self._periodic))

    # -- OpenFlow in ----------------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _features(self, ev: Any) -> None:
        dp = ev.msg.datapath
        self.datapaths[dp.id] = dp
        dp.send_msg(dp.ofproto_parser.OFPPortDescStatsRequest(dp, 0))

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def _ports(self, ev: Any) -> None:
        dp = ev.msg.datapath
        ports = {p.port_no for p in ev.msg.body if p.port_no < dp.ofproto.OFPP_MAX}
        with self.lock:
            self._send(self.fabric.switch_up(time.time(), dp.id, ports))
        self._write_status()

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev: Any) -> None:
        now = time.time()
        msg = ev.msg
        try:
            in_port = msg.match["in_port"]
        except KeyError:
            return
        with self.lock:
            self._send(self.fabric.packet_in(now, msg.datapath.id, in_port, bytes(msg.data)))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev: Any) -> None:
        msg = ev.msg
        dp, ofp = msg.datapath, msg.datapath.ofproto
        port = msg.desc.port_no
        if port >= ofp.OFPP_MAX or msg.reason == ofp.OFPPR_MODIFY:
            return
        with self.lock:
            self._send(self.fabric.port_changed(time.time(), dp.id, port,
                                                msg.reason == ofp.OFPPR_ADD))

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier(self, ev: Any) -> None:
        now = time.time()
        key = (ev.msg.datapath.id, ev.msg.xid)
        with self.lock:
            tag = self.barriers.pop(key, None)
            if tag is not None:
                self.fabric.barrier_reply(now, key[0], tag)

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def _gone(self, ev: Any) -> None:
        dp = ev.datapath
        if dp.id is None or self.datapaths.get(dp.id) is not dp:
            return
        del self.datapaths[dp.id]
        with self.lock:
            self._send(self.fabric.switch_down(time.time(), dp.id))
        self._write_status()

    # -- decisions out ----------------------------------------------------------------------------
    def _send(self, msgs: list[Message]) -> None:
        ofmsg.send(self.datapaths, self.barriers, msgs)

    # -- housekeeping ---------------------------------------------------------------------------
    def _periodic(self) -> None:
        """Held-back moves when their hold expires; discovery probes; the status file."""
        last_probe = last_status = 0.0
        while True:
            hub.sleep(TICK_S)
            now = time.time()
            with self.lock:
                self._send(self.fabric.tick(now))
                if now - last_probe >= SETTINGS["probe_interval_s"]:
                    self._send(self.fabric.probes())
                    last_probe = now
            if now - last_status >= 0.25:
                self._write_status()
                last_status = now

    def _write_status(self) -> None:
        if not self.status_path:
            return
        with self.lock:
            data = {**self.fabric.status(), "t": time.time(), "pid": os.getpid()}
        tmp = f"{self.status_path}.tmp"
        with open(tmp, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.status_path)
