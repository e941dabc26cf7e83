"""What this machine can hold, checked before a run starts (and by ``wanmig validate``): the
experiment's VM memory, both its images on this machine's /dev/shm, against MemAvailable and
the images' folder's free space now (``migrator.memfit`` has the arithmetic and the readings);
a VM's disk, twice, against its datastore's free space."""

from __future__ import annotations

from experiments.spec import ExperimentSpec
from ground.config import ConfigError
from migrator.memfit import HostMemory, check_fits, footprint, read_host_memory

GIB = 1 << 30
MIB = 1 << 20


def memory_text(n: int) -> str:
    """``vm.memory`` as a spec would write it: ``15GiB``, ``256MiB``, else bytes."""
    for unit, size in (("GiB", GIB), ("MiB", MIB)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def check_capacity(spec: ExperimentSpec, host: HostMemory | None = None) -> None:
    """ConfigError naming ``vm.memory`` unless the run's memory fits ``host`` (default: this
    machine, read now)."""
    if host is None:
        from migrator.guest.image import shm_dir
        host = read_host_memory(shm_dir())
    check_fits("vm.memory", memory_text(spec.vm.memory_bytes), spec.vm.memory_bytes,
               footprint(spec.policy), host)


def check_datastore(spec: ExperimentSpec, free_bytes: int | None = None) -> None:
    """ConfigError naming ``vm.disk.size`` unless the datastore's file system has room for the
    disk twice (the source's image and the destination's, in the worst case both written
    whole); ``free_bytes`` default: the datastore's free space, read now."""
    disk = spec.vm.disk
    if disk is None or spec.vm.kind != "emulated":
        return
    if free_bytes is None:
        import os

        from migrator.disk.datastore import datastore_root

        root = datastore_root()
        while not root.exists():
            root = root.parent
        st = os.statvfs(root)
        free_bytes = st.f_bavail * st.f_frsize
    need = 2 * disk.size_bytes
    if need > free_bytes:
        raise ConfigError("vm.disk.size", memory_text(disk.size_bytes),
                          f"a disk that fits the datastore twice (source and destination): "
                          f"{memory_text(need)} needed, {free_bytes // MIB} MiB free")


def check_fleet_capacity(spec: ExperimentSpec, host: HostMemory | None = None) -> None:
    """ConfigError naming ``vms`` unless every VM of a fleet fits this machine at once, each
    with the images a migration of it needs (the fleet's VMs all share this one machine)."""
    if host is None:
        from migrator.guest.image import shm_dir
        host = read_host_memory(shm_dir())
    assert spec.fleet is not None
    total = sum(v.vm.memory_bytes for v in spec.fleet.vms)
    check_fits("vms", f"{len(spec.fleet.vms)} VMs, {memory_text(total)} in all", total,
               footprint(spec.policy), host)
