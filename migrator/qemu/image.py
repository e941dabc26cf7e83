"""The QEMU guest image: a Debian kernel and an initramfs (busybox, the NIC's modules, the
project's init and agent), built from Debian packages into a cache outside the repository.

Where: ``$WANMIG_GUEST_CACHE`` or ``/var/cache/wanmig/guest``; each image in a folder named by
the digest of its inputs (the kernel package and version apt would install, the installed
busybox-static's version, ``agent/agent.c``, ``agent/init`` and ``BUILDER_VERSION``), holding
``vmlinuz``, ``initrd.gz`` and ``image.json`` (paths, digest, versions, ``built_t``).  The
inputs are read from apt's and dpkg's local state, so ``build`` of an up-to-date image costs a
few queries and downloads nothing; a new image replaces the older ones.

``python -m migrator.qemu.image build|show [--json]``; ``find_image()`` (no build) and
``build_image()`` for code.  Errors are ``ImageError`` (one line, naming what failed).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from migrator.qemu import debs
from migrator.qemu.debs import ImageError
from migrator.qemu.initramfs import NIC_MODULES, Entry, gzip_archive, module_order, newc_archive

log = logging.getLogger(__name__)

BUILDER_VERSION = 1
AGENT_DIR = Path(__file__).resolve().parent / "agent"
DEFAULT_CACHE = Path("/var/cache/wanmig/guest")
_DIRS = ("bin", "dev", "etc", "proc", "sys", "tmp", "lib", "lib/modules")


def cache_dir() -> Path:
    return Path(os.environ.get("WANMIG_GUEST_CACHE") or DEFAULT_CACHE)


@dataclass(frozen=True)
class ImageInputs:
    """Everything the image is made of; its digest names the image."""

    kernel_package: str
    kernel_version: str
    busybox_version: str
    agent_sha256: str
    init_sha256: str
    builder_version: int = BUILDER_VERSION

    def digest(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def kernel_release(self) -> str:
        return debs.release_of(self.kernel_package)


@dataclass(frozen=True)
class GuestImage:
    """A built image as ``image.json`` describes it."""

    digest: str
    kernel: Path
    initrd: Path
    kernel_package: str
    kernel_version: str
    kernel_release: str
    busybox_version: str
    modules: tuple[str, ...]
    built_t: float
    build_s: float

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data.update(kernel=str(self.kernel), initrd=str(self.initrd), modules=list(self.modules))
        data["size_bytes"] = self.size_bytes()
        return data

    @classmethod
    def from_json(cls, data: dict) -> GuestImage:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values.update(kernel=Path(data["kernel"]), initrd=Path(data["initrd"]),
                      modules=tuple(data["modules"]))
        return cls(**values)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.kernel, self.initrd) if p.exists())


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ImageError(f"reading {path}: {exc.strerror}") from None


def current_inputs() -> ImageInputs:
    """The inputs an image built now would have (apt's and dpkg's local state, our files)."""
    name, version = debs.kernel_package()
    return ImageInputs(name, version, debs.busybox_version(), _sha256(AGENT_DIR / "agent.c"),
                       _sha256(AGENT_DIR / "init"))


def _load(folder: Path) -> GuestImage | None:
    try:
        image = GuestImage.from_json(json.loads((folder / "image.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return image if image.kernel.is_file() and image.initrd.is_file() else None


def find_image(inputs: ImageInputs | None = None) -> GuestImage | None:
    """The cached image for ``inputs`` (default: the current ones), or None; never builds."""
    inputs = inputs or current_inputs()
    return _load(cache_dir() / inputs.digest())


def build_image(force: bool = False) -> GuestImage:
    """The image for the current inputs, built unless the cache has it (or ``force``)."""
    inputs = current_inputs()
    if not force and (found := find_image(inputs)) is not None:
        log.info("guest image %s is up to date", found.digest)
        return found
    return _build(inputs)


def compile_agent(out: Path) -> None:
    """agent.c compiled static into ``out``."""
    debs.run(["gcc", "-O2", "-static", "-Wall", "-o", str(out), str(AGENT_DIR / "agent.c"),
              "-lm"], "compiling the guest agent")


def _entries(root: Path, release: str, modules: list[str], agent: Path) -> list[Entry]:
    entries = [Entry(d, 0o755) for d in _DIRS]
    entries.append(Entry("bin/busybox", 0o755, debs.BUSYBOX.read_bytes()))
    applets = debs.run([str(debs.BUSYBOX), "--list"], "listing busybox's applets").split()
    entries += [Entry(f"bin/{a}", link="busybox") for a in applets if a != "busybox"]
    entries.append(Entry("init", 0o755, (AGENT_DIR / "init").read_bytes()))
    entries.append(Entry("bin/wanmig-agent", 0o755, agent.read_bytes()))
    moddir = root / "lib" / "modules" / release
    for rel in modules:
        entries.append(Entry(f"lib/modules/{Path(rel).name}", 0o644, (moddir / rel).read_bytes()))
    order = "".join(f"{Path(rel).name}\n" for rel in modules)
    entries.append(Entry("etc/modules.order", 0o644, order.encode()))
    return entries


def _build(inputs: ImageInputs) -> GuestImage:
    t0 = time.monotonic()
    release, digest = inputs.kernel_release, inputs.digest()
    cache = cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"creating the guest image cache {cache}: {exc.strerror}") from None
    log.info("building guest image %s (%s %s, busybox %s)", digest, inputs.kernel_package,
             inputs.kernel_version, inputs.busybox_version)
    with tempfile.TemporaryDirectory(prefix="wanmig-guest-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)           # apt's sandbox user reads the download folder
        deb = debs.download_kernel(inputs.kernel_package, inputs.kernel_version, work)
        root = work / "root"
        debs.extract(deb, root)
        deb.unlink()
        vmlinuz = root / "boot" / f"vmlinuz-{release}"
        if not vmlinuz.is_file():
            raise ImageError(f"{deb.name} has no boot/vmlinuz-{release}")
        modules = module_order(debs.depmod(root, release), NIC_MODULES)
        agent = work / "wanmig-agent"
        compile_agent(agent)
        initrd = gzip_archive(newc_archive(_entries(root, release, modules, agent)))
        staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=cache))
        staging.chmod(0o755)
        shutil.copyfile(vmlinuz, staging / "vmlinuz")
        (staging / "initrd.gz").write_bytes(initrd)
    final = cache / digest
    image = GuestImage(digest, final / "vmlinuz", final / "initrd.gz", inputs.kernel_package,
                       inputs.kernel_version, release, inputs.busybox_version,
                       tuple(Path(m).stem for m in modules), time.time(),
                       round(time.monotonic() - t0, 2))
    meta = image.to_json() | {"size_bytes": (staging / "vmlinuz").stat().st_size + len(initrd),
                              "inputs": dataclasses.asdict(inputs)}
    (staging / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    _remove_others(cache, keep=digest)
    log.info("guest image %s built in %.1f s", digest, image.build_s)
    return image


def _remove_others(cache: Path, keep: str) -> None:
    """Older images (folders with an image.json) and abandoned staging folders."""
    for folder in cache.iterdir():
        if folder.name == keep or not folder.is_dir():
            continue
        if (folder / "image.json").exists() or folder.name.startswith("."):
            shutil.rmtree(folder, ignore_errors=True)
            log.info("removed old guest image %s", folder.name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m migrator.qemu.image",
                                description="build or show the QEMU guest image")
    p.add_argument("action", choices=("build", "show"))
    p.add_argument("--json", action="store_true", help="print image.json's figures as JSON")
    p.add_argument("--force", action="store_true", help="build even when up to date")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        image = build_image(args.force) if args.action == "build" else find_image()
    except ImageError as exc:
        print(f"guest image: {exc}", file=sys.stderr)
        return 1
    if image is None:
        print(f"guest image: not built (in {cache_dir()}); "
              "python -m migrator.qemu.image build", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(image.to_json(), indent=2))
    else:
        print(f"guest image {image.digest}: {image.kernel_package} {image.kernel_version}, "
              f"busybox {image.busybox_version}, {image.size_bytes() / 2**20:.1f} MiB in "
              f"{image.kernel.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
