"""The experiment spec: one YAML file says everything a run needs, validated before anything starts.

Why one frozen spec: the runner builds a network, starts a controller, a VM and clients, and only
then migrates; a misspelt key found at that point would waste minutes and leave a half-run folder.
Every key is checked here with the project's one schema helper, so an error names its key path
(``vm.memory``, ``topology.wan[0].rtt_ms``, ``policy.codec``), the value and what was expected.

Example (every key shown has its default; an empty file is exactly the quickstart)::

    name: quickstart             # default: the file's stem; used in the results folder name
    description: ""              # free text, copied to config.yaml
    topology: null               # null (two sites, 150 ms, 250 Mbit/s), a topology file (relative
                                 # to this file) or an inline topology mapping
    vm:
      kind: emulated             # emulated (the project's guest process) or qemu (a QEMU guest,
                                 # migrated by QEMU's own live migration: migrator/qemu)
      vcpus: 1                   # QEMU guests only: virtual CPUs
      memory: 256MiB             # bytes (int) or "<n>B|KiB|MiB|GiB"; a whole number of pages
      workload: web              # a preset (idle, web, database, memory-intensive, crypto) or a
                                 # mapping of workload fields (migrator.memory.workload: rate,
                                 # working set, skew, bursts, write_bytes, content), optionally
                                 # starting from `preset: <name>`
      seed: null                 # default: the experiment's seed
      disk: null                 # none, or a disk in the source host's datastore
                                 # (migrator.disk.params): size, allocated (half), block_bytes
                                 # (64KiB), workload {write_rate_mibps, read_rate_mibps,
                                 # working_set_frac, skew, zipf_s, content}; policy.storage
                                 # says how it moves (background, write-blocking, shared)
    placement:
      source: null               # default: the first hypervisor of the first site
      destination: null          # default: the first hypervisor of the second site
    policy: {}                   # migrator.core.policy keys (codec: adaptive by default)
    clients:
      host: null                 # default: the first client at the destination site, so it sees
                                 # the VM across the WAN before the migration and locally after
      probe_ms: 10               # one UDP probe every probe_ms
      kv_ops: 200                # TCP key-value operations (half writes, half reads)
      kv_rate_hz: 10             # operations per second
      kv_value_bytes: 64         # size of each written value
    schedule:
      warmup_s: 10               # clients and workload run this long before the migration
      migrate_back: false        # migrate back to the source afterwards
      back_after_s: 10           # ...this long after the first migration finished
      cooldown_s: 10             # clients keep running this long after the last migration
    repetitions: 1
    seed: 1                      # repetition r (0-based) uses seed + r
    faults: []                   # faults injected during the run: experiments/faults/spec.py
    vms: null                    # a fleet: many VMs, hosts, drs, execution, events
                                 # (experiments/fleet/spec.py); vm: is then their defaults
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.faults.spec import FaultSpec, faults_dict, parse_faults
from experiments.fleet.spec import FLEET_KEYS, FleetSpec, fleet_dict, parse_fleet
from ground.config import ConfigError, Section
from ground.units import UNITS, parse_size
from ground.yamlfile import read_yaml
from migrator.core.policy import MigrationPolicy, parse_policy
from migrator.disk.params import DiskParams, parse_disk
from migrator.memory.pages import PAGE_SIZE
from migrator.memory.workload import PRESETS, WorkloadParams, parse_workload
from topologies.spec import TopologySpec, parse_topology

KEYS = ("name", "description", "topology", "vm", "placement", "policy", "clients", "schedule",
        "repetitions", "seed", "faults", *FLEET_KEYS)
DEFAULT_NAME = "quickstart"
DEFAULT_WORKLOAD = "web"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")   # lands in a folder name
MIN_MEMORY = 1024 ** 2          # 1 MiB: below that a migration measures only fixed costs
MAX_MEMORY = 16 * 1024 ** 3     # the VM's memory is shared memory on this one machine
MAX_REPETITIONS = 100
MAX_SEED = 2 ** 32 - 1          # numpy's seed range
MAX_VALUE_BYTES = 1024          # one line of the guest's key-value protocol
YAML_SUFFIXES = (".yaml", ".yml")   # what a file named inside a spec must end with
VM_KINDS = ("emulated", "qemu")
MAX_VCPUS = 8


@dataclass(frozen=True)
class VmSpec:
    memory_bytes: int
    workload: WorkloadParams
    workload_preset: str | None   # the preset the workload started from, if any
    seed: int
    kind: str = "emulated"
    vcpus: int = 1
    disk: DiskParams | None = None   # vm.disk (migrator.disk.params), moved by policy.storage

    @property
    def pages(self) -> int:
        return self.memory_bytes // PAGE_SIZE


@dataclass(frozen=True)
class PlacementSpec:
    source: str                   # hypervisor host names
    destination: str
    source_site: str
    destination_site: str


@dataclass(frozen=True)
class ClientSpec:
    host: str
    site: str
    probe_ms: float
    kv_ops: int
    kv_rate_hz: float
    kv_value_bytes: int


@dataclass(frozen=True)
class ScheduleSpec:
    warmup_s: float
    migrate_back: bool
    back_after_s: float
    cooldown_s: float


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    description: str
    topology: TopologySpec
    vm: VmSpec
    placement: PlacementSpec
    policy: MigrationPolicy
    clients: ClientSpec
    schedule: ScheduleSpec
    repetitions: int
    seed: int
    # Where the topology came from (a file path or 'inline'/'default'); for the record only.
    topology_source: str = field(default="default", compare=False)
    faults: tuple[FaultSpec, ...] = ()
    fleet: FleetSpec | None = None        # vms: ... (experiments.fleet.spec)

    def seed_for(self, repetition: int) -> int:
        """The seed of 0-based repetition ``repetition``."""
        return (self.seed + repetition) % (MAX_SEED + 1)


def parse_memory(value: Any, path: str) -> int:
    """Bytes from an int or a ``"256MiB"`` string; a whole number of pages in the allowed range."""
    expected = (f"a size in bytes (integer) or a string like '256MiB' (units: "
                f"{', '.join(UNITS)}), a multiple of {PAGE_SIZE} from {MIN_MEMORY // 1024 ** 2} "
                f"MiB to {MAX_MEMORY // 1024 ** 3} GiB")
    size = parse_size(value, path, expected)
    if size % PAGE_SIZE or not MIN_MEMORY <= size <= MAX_MEMORY:
        raise ConfigError(path, value, expected)
    return size


def _vm(data: Any, path: str, seed: int) -> VmSpec:
    sec = Section(data, path, ("kind", "vcpus", "memory", "workload", "seed", "disk"))
    kind = sec.string("kind", "emulated", VM_KINDS)
    vcpus = sec.number("vcpus", 1, minimum=1, maximum=MAX_VCPUS, integer=True)
    if kind == "emulated" and vcpus != 1:
        raise ConfigError(sec.where("vcpus"), vcpus, "1 for vm.kind emulated (the emulated VM "
                                                     "has no virtual CPUs to count)")
    memory = parse_memory(sec.raw("memory", "256MiB"), sec.where("memory"))
    raw = sec.raw("workload", DEFAULT_WORKLOAD)
    workload = parse_workload(raw, sec.where("workload"))
    preset = raw if isinstance(raw, str) else None
    if isinstance(raw, dict) and isinstance(raw.get("preset"), str):
        preset = raw["preset"]
    vm_seed = sec.number("seed", seed, minimum=0, maximum=MAX_SEED, integer=True)
    disk = parse_disk(sec.raw("disk", None), sec.where("disk"))
    return VmSpec(memory_bytes=memory, workload=workload, workload_preset=preset, seed=vm_seed,
                  kind=kind, vcpus=vcpus, disk=disk)


def _placement(data: Any, path: str, topo: TopologySpec) -> PlacementSpec:
    sec = Section(data, path, ("source", "destination"))
    site_of = {h: s.name for s in topo.sites for h in s.hypervisors}
    names = ", ".join(site_of)
    src = sec.string("source", topo.sites[0].hypervisors[0])
    if src not in site_of:
        raise ConfigError(sec.where("source"), src, f"a hypervisor of the topology: {names}")
    dst = sec.string("destination", topo.sites[1].hypervisors[0])
    if dst not in site_of:
        raise ConfigError(sec.where("destination"), dst, f"a hypervisor of the topology: {names}")
    if dst == src:
        raise ConfigError(sec.where("destination"), dst,
                          f"a hypervisor other than the source ({src})")
    return PlacementSpec(source=src, destination=dst, source_site=site_of[src],
                         destination_site=site_of[dst])


def _clients(data: Any, path: str, topo: TopologySpec, dest_site: str) -> ClientSpec:
    sec = Section(data, path, ("host", "probe_ms", "kv_ops", "kv_rate_hz", "kv_value_bytes"))
    site_of = {h: s.name for s in topo.sites for h in s.clients}
    if sec.has("host"):
        host = sec.string("host")
        if host not in site_of:
            raise ConfigError(sec.where("host"), host,
                              f"a client host of the topology: {', '.join(site_of) or 'none'}")
    else:
        local = topo.site(dest_site).clients
        if not local:
            raise ConfigError(sec.where("host"), None,
                              f"a client host (the destination site {dest_site} has no clients "
                              f"to default to; clients: {', '.join(site_of) or 'none'})")
        host = local[0]
    return ClientSpec(
        host=host, site=site_of[host],
        probe_ms=sec.number("probe_ms", 10.0, minimum=1.0, maximum=1000.0),
        kv_ops=sec.number("kv_ops", 200, minimum=0, maximum=1_000_000, integer=True),
        kv_rate_hz=sec.number("kv_rate_hz", 10.0, above=0.0, maximum=10_000.0),
        kv_value_bytes=sec.number("kv_value_bytes", 64, minimum=1, maximum=MAX_VALUE_BYTES,
                                  integer=True))


def _schedule(data: Any, path: str) -> ScheduleSpec:
    sec = Section(data, path, ("warmup_s", "migrate_back", "back_after_s", "cooldown_s"))
    return ScheduleSpec(warmup_s=sec.number("warmup_s", 10.0, minimum=0.0, maximum=3600.0),
                        migrate_back=sec.boolean("migrate_back", False),
                        back_after_s=sec.number("back_after_s", 10.0, minimum=0.0,
                                                maximum=3600.0),
                        cooldown_s=sec.number("cooldown_s", 10.0, minimum=0.0, maximum=3600.0))


def spec_file(value: str, path: str, base_dir: Path | None, what: str) -> Path:
    """The file a spec names (relative to ``base_dir``): an existing ``.yaml``/``.yml`` file,
    checked before it is opened, so that ``topology: /etc/passwd`` reads nothing."""
    file = Path(value)
    if not file.is_absolute():
        file = (base_dir or Path.cwd()) / file
    if file.suffix not in YAML_SUFFIXES:
        raise ConfigError(path, value, f"a {what} file name ending in .yaml or .yml")
    if not file.is_file():
        raise ConfigError(path, value, f"an existing {what} file (looked for {file})")
    return file


def topology_data(value: Any, path: str, base_dir: Path | None) -> tuple[Any, str]:
    """The raw topology mapping of an experiment's ``topology:`` and where it came from."""
    if value is None:
        return {}, "default"
    if isinstance(value, str):
        file = spec_file(value, path, base_dir, "topology")
        return read_yaml(file), str(file)
    if isinstance(value, dict):
        return value, "inline"
    raise ConfigError(path, value, "a topology file name or an inline topology mapping")


def parse_experiment(data: Any, base_dir: str | Path | None = None,
                     default_name: str = DEFAULT_NAME) -> ExperimentSpec:
    """Validate an experiment mapping (as loaded from YAML) and freeze it.

    ``base_dir`` is where a topology file name is looked up (the experiment file's folder).
    """
    top = Section(data, "", KEYS)
    name = top.string("name", default_name)
    if not NAME_RE.fullmatch(name):
        raise ConfigError("name", name, "1 to 64 characters: letters, digits, '.', '_' or '-', "
                                        "starting with a letter or digit")
    description = top.string("description", "")
    seed = top.number("seed", 1, minimum=0, maximum=MAX_SEED, integer=True)
    raw_topo, source = topology_data(top.data.get("topology"), "topology",
                                     Path(base_dir) if base_dir is not None else None)
    try:
        topo = parse_topology(raw_topo, "topology")
    except ConfigError as exc:
        if source in ("default", "inline"):
            raise
        raise ConfigError(f"{exc.path} (in {source})", exc.value, exc.expected) from exc
    placement = _placement(top.data.get("placement"), "placement", topo)
    return ExperimentSpec(
        name=name, description=description, topology=topo,
        vm=_vm(top.data.get("vm"), "vm", seed),
        placement=placement,
        policy=parse_policy(top.data.get("policy"), "policy"),
        clients=_clients(top.data.get("clients"), "clients", topo, placement.destination_site),
        schedule=_schedule(top.data.get("schedule"), "schedule"),
        repetitions=top.number("repetitions", 1, minimum=1, maximum=MAX_REPETITIONS,
                               integer=True),
        seed=seed, topology_source=source,
        faults=parse_faults(top.data.get("faults"), "faults", topo, placement.source_site,
                            placement.destination_site),
        fleet=parse_fleet(top.data, topo, seed, _vm))


def load_experiment(path: str | Path) -> ExperimentSpec:
    """Read and validate an experiment file; its name defaults to the file's stem."""
    file = Path(path)
    data = read_yaml(file)
    return parse_experiment({} if data is None else data, file.parent,
                            default_name=file.stem if NAME_RE.fullmatch(file.stem)
                            else DEFAULT_NAME)


def topology_dict(topo: TopologySpec) -> dict:
    """A topology mapping that parses back to ``topo`` (every default made explicit)."""
    def fabric(site: Any) -> dict:
        if site.fabric.kind == "edge":
            return {"kind": "edge"}
        return {"kind": site.fabric.kind, "leaves": site.fabric.leaves,
                "spines": site.fabric.spines}
    return {
        "name": topo.name,
        "sites": [{"name": s.name, "hypervisors": list(s.hypervisors),
                   "clients": list(s.clients), "fabric": fabric(s)} for s in topo.sites],
        "wan": [{"between": [w.a, w.b], "rtt_ms": w.rtt_ms, "bw_mbps": w.bw_mbps,
                 "loss_pct": w.loss_pct, "jitter_ms": w.jitter_ms, "queue_pkts": w.queue_pkts,
                 "mtu": w.mtu} for w in topo.wan],
        "controller": {"site": topo.controller.site,
                       "control_rtt_ms": topo.controller.control_rtt_ms},
    }


def vm_dict(vm: VmSpec) -> dict:
    """A VM's keys, every default explicit (``_vm`` of it gives ``vm`` back)."""
    workload = dataclasses.asdict(vm.workload)
    if vm.workload_preset in PRESETS:
        workload = {"preset": vm.workload_preset, **workload}
    return {"kind": vm.kind, "vcpus": vm.vcpus, "memory": vm.memory_bytes, "workload": workload,
            "seed": vm.seed, **({"disk": vm.disk.to_dict()} if vm.disk is not None else {})}


def resolved_dict(spec: ExperimentSpec) -> dict:
    """The fully resolved experiment, every default explicit; ``parse_experiment`` of it gives
    ``spec`` back. Written to a run's config.yaml."""
    return {
        "name": spec.name,
        "description": spec.description,
        "topology": topology_dict(spec.topology),
        "vm": vm_dict(spec.vm),
        **({"placement": {"source": spec.placement.source,
                          "destination": spec.placement.destination}}
           if spec.fleet is None else {}),
        "policy": dataclasses.asdict(spec.policy),
        "clients": {k: v for k, v in dataclasses.asdict(spec.clients).items() if k != "site"},
        "schedule": dataclasses.asdict(spec.schedule),
        "repetitions": spec.repetitions,
        "seed": spec.seed,
        **({"faults": faults_dict(spec.faults)} if spec.faults else {}),
        **(fleet_dict(spec.fleet, vm_dict) if spec.fleet is not None else {}),
    }
