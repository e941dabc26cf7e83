"""What this machine can hold, checked before a run starts (and by ``wanmig validate``): the
experiment's VM memory, both its images on this machine's /dev/shm, against MemAvailable and
the images' folder's free space now (``migrator.memfit`` has the arithmetic and the readings)."""

from __future__ import annotations

from experiments.spec import ExperimentSpec
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
