"""Which accelerator QEMU guests run under here: KVM when it really boots the image, else TCG.

``/dev/kvm`` existing proves nothing (on this machine kind a guest once hung at boot under
``-accel kvm``), so ``probe_accel`` boots the image: under KVM when ``/dev/kvm`` opens
read-write, waiting ``BOOT_DEADLINE_S`` for the agent's ready line; if that fails, under TCG,
which must then boot or the probe raises ``AccelError``.  ``choose`` makes the decision from
what was seen (pure).  The verdict is cached in ``<state dir>/accel.json`` (``/run/wanmig``,
emptied at every host boot) under a key of the image digest, QEMU's version and the host
kernel's release, so a run reads it instead of probing again.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ground.errors import NotAsAskedError
from ground.records import state_dir
from migrator.qemu.boot import boot_user_guest
from migrator.qemu.image import GuestImage
from migrator.qemu.launch import QEMU

log = logging.getLogger(__name__)

BOOT_DEADLINE_S = 20.0
KVM_DEVICE = Path("/dev/kvm")
CACHE_NAME = "accel.json"


class AccelError(NotAsAskedError):
    """No accelerator boots the guest image."""


@dataclass(frozen=True)
class AccelChoice:
    """The accelerator (``kvm`` or ``tcg``), why, and the boot time to the agent's ready line
    under it (seconds)."""

    name: str
    reason: str
    boot_s: float | None
    kvm_boot_s: float | None = None


@dataclass(frozen=True)
class Boot:
    """One probe boot: seconds to ready, or None and what was seen instead."""

    ready_s: float | None
    detail: str = ""


def kvm_open_error(device: Path = KVM_DEVICE) -> str | None:
    """None when ``device`` opens read-write; why not otherwise."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"{device} cannot be opened read-write: {exc.strerror}"
    os.close(fd)
    return None


def choose(kvm_error: str | None, kvm: Boot | None, tcg: Boot | None) -> AccelChoice:
    """The verdict from what the probe saw; AccelError when TCG was needed and did not boot."""
    if kvm_error is None and kvm is not None and kvm.ready_s is not None:
        return AccelChoice("kvm", f"KVM booted the image in {kvm.ready_s:.1f} s", kvm.ready_s,
                           kvm.ready_s)
    if kvm_error is not None:
        why = kvm_error
    elif kvm is None:
        why = "KVM was not tried"
    else:
        why = f"KVM did not boot the image within {BOOT_DEADLINE_S:g} s ({kvm.detail})"
    if tcg is None or tcg.ready_s is None:
        detail = tcg.detail if tcg is not None else "not tried"
        raise AccelError(f"no accelerator boots the guest image: {why}; TCG did not boot it "
                         f"either within {BOOT_DEADLINE_S:g} s ({detail})")
    return AccelChoice("tcg", f"TCG booted the image in {tcg.ready_s:.1f} s; {why}",
                       tcg.ready_s)


def qemu_version(qemu: str = QEMU) -> str:
    """``7.2.22`` from ``qemu-system-x86_64 --version``."""
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=10,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise AccelError(f"{qemu} --version failed: {exc}") from None
    words = out.split()
    return words[words.index("version") + 1] if "version" in words else out.strip()[:40]


def cache_key(image_digest: str, qemu: str, kernel_release: str) -> str:
    return f"{image_digest}/{qemu}/{kernel_release}"


def _cache_path() -> Path:
    return state_dir() / CACHE_NAME


def cached_choice(key: str) -> AccelChoice | None:
    """The verdict cached under ``key``, if any."""
    try:
        data = json.loads(_cache_path().read_text())
        return AccelChoice(**data[key]) if isinstance(data, dict) and key in data else None
    except (OSError, ValueError, TypeError):
        return None


def _store(key: str, choice: AccelChoice) -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({key: asdict(choice)}, indent=2) + "\n")
        tmp.replace(path)
    except OSError as exc:
        log.warning("accelerator verdict not cached in %s: %s", path, exc)


def _boot(image: GuestImage, accel: str, workdir: Path) -> Boot:
    with boot_user_guest(image.kernel, image.initrd, accel, workdir, "probe") as guest:
        ready = guest.wait_ready(BOOT_DEADLINE_S)
        if ready is None:
            return Boot(None, guest.why_not_ready())
        return Boot(round(ready, 2))


def probe_accel(image: GuestImage, use_cache: bool = True) -> AccelChoice:
    """The accelerator for guests of ``image`` on this machine (cached per host boot)."""
    key = cache_key(image.digest, qemu_version(), platform.release())
    if use_cache and (found := cached_choice(key)) is not None:
        return found
    kvm_error = kvm_open_error()
    with tempfile.TemporaryDirectory(prefix="wanmig-accel-") as tmp:
        kvm = _boot(image, "kvm", Path(tmp)) if kvm_error is None else None
        ok = kvm is not None and kvm.ready_s is not None
        tcg = None if ok else _boot(image, "tcg", Path(tmp))
    choice = choose(kvm_error, kvm, tcg)
    log.info("accelerator: %s (%s)", choice.name, choice.reason)
    _store(key, choice)
    return choice
