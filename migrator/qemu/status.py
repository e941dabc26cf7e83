"""What ``wanmig check`` says about QEMU guests: the image (built? digest, kernel) and the
accelerator (the cached verdict, or a fresh probe when asked).

``wanmig check`` lives in ``topologies.cli``, which may not import the migrator; the command
(or experiments) calls ``describe()`` and prints its dict beside the rest.
"""

from __future__ import annotations

import platform
import shutil
from dataclasses import asdict

from migrator.qemu.accel import AccelError, cache_key, cached_choice, probe_accel, qemu_version
from migrator.qemu.debs import ImageError
from migrator.qemu.image import cache_dir, find_image
from migrator.qemu.launch import QEMU


def describe(probe: bool = False) -> dict:
    """``{"qemu": ..., "image": {...}, "accel": {...}}``; never raises for a missing piece, it
    says what is missing.  ``probe``: boot the image when no verdict is cached (seconds)."""
    out: dict = {"qemu": None, "image": {"built": False, "cache": str(cache_dir())},
                 "accel": {"name": None, "reason": "not probed"}}
    if shutil.which(QEMU) is None:
        out["accel"]["reason"] = f"{QEMU} is not installed (make setup)"
        return out
    try:
        out["qemu"] = qemu_version()
        image = find_image()
    except (ImageError, AccelError) as exc:
        out["image"]["error"] = str(exc)
        return out
    if image is None:
        out["image"]["error"] = "not built: python -m migrator.qemu.image build (make setup)"
        return out
    out["image"] = {"built": True, "digest": image.digest, "kernel": image.kernel_package,
                    "kernel_version": image.kernel_version, "path": str(image.kernel.parent),
                    "size_bytes": image.size_bytes()}
    key = cache_key(image.digest, out["qemu"], platform.release())
    choice = cached_choice(key)
    if choice is None and probe:
        try:
            choice = probe_accel(image)
        except AccelError as exc:
            out["accel"] = {"name": None, "reason": str(exc)}
            return out
    if choice is not None:
        out["accel"] = asdict(choice)
    return out
