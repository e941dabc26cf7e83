"""The guest process's configuration and its command line (``python -m
migrator.guest.process --help``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass

from ground.config import ConfigError
from migrator.guest.control import check_location
from migrator.guest.guestdisk import DiskConfig, parse_disk_arg
from migrator.guest.image import image_name
from migrator.guest.service import TCP_PORT, UDP_PORT
from migrator.memory.workload import WorkloadParams, parse_workload

KV_PAGES = 64


@dataclass(frozen=True)
class GuestConfig:
    vm: str
    tag: str
    workload: WorkloadParams
    seed: int = 0
    location: str = "dc1"
    service: bool = True
    service_host: str = "0.0.0.0"
    udp_port: int = UDP_PORT
    tcp_port: int = TCP_PORT
    kv_pages: int = KV_PAGES
    owner_pid: int = 0             # the launcher; the guest stops once it is gone (0: none)
    disk: DiskConfig | None = None  # the VM's disk (``migrator.guest.guestdisk``), if any



def parse_args(argv: list[str] | None) -> GuestConfig:
    p = argparse.ArgumentParser(prog="python -m migrator.guest.process",
                                description="the guest process of an emulated VM")
    p.add_argument("--vm", required=True)
    p.add_argument("--tag", required=True, help="memory image to start on")
    w = p.add_mutually_exclusive_group(required=True)
    w.add_argument("--workload", help="preset name or a JSON mapping")
    w.add_argument("--dirty-rate", type=float, help="MiB/s of uniform writes over all memory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--location", default="dc1")
    p.add_argument("--service-host", default="0.0.0.0")
    p.add_argument("--udp-port", type=int, default=UDP_PORT)
    p.add_argument("--tcp-port", type=int, default=TCP_PORT)
    p.add_argument("--no-service", action="store_true")
    p.add_argument("--kv-pages", type=int, default=KV_PAGES)
    p.add_argument("--owner-pid", type=int, default=0,
                   help="stop once this process is gone (0: never)")
    p.add_argument("--disk", help="the VM's disk, a JSON mapping (migrator.guest.guestdisk)")
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s guest %(levelname)s %(message)s")
    if a.workload is not None:
        spec = a.workload
        if spec.lstrip().startswith("{"):
            try:
                spec = json.loads(spec)
            except json.JSONDecodeError as exc:
                raise ConfigError("--workload", a.workload, f"a preset or JSON ({exc})") from exc
        params = parse_workload(spec, "--workload")
    else:
        params = WorkloadParams(dirty_rate_mibps=a.dirty_rate)
    for name, port in (("--udp-port", a.udp_port), ("--tcp-port", a.tcp_port)):
        if not 1 <= port <= 65535:
            raise ConfigError(name, port, "a port from 1 to 65535")
    if a.owner_pid < 0:
        raise ConfigError("--owner-pid", a.owner_pid, "a process id, or 0 for none")
    if a.kv_pages < 1:
        raise ConfigError("--kv-pages", a.kv_pages, "at least 1")
    check_location(a.location)
    image_name(a.vm, a.tag)
    return GuestConfig(vm=a.vm, tag=a.tag, workload=params, seed=a.seed, location=a.location,
                       service=not a.no_service, service_host=a.service_host,
                       udp_port=a.udp_port, tcp_port=a.tcp_port, kv_pages=a.kv_pages,
                       owner_pid=a.owner_pid,
                       disk=parse_disk_arg(a.disk) if a.disk is not None else None)
