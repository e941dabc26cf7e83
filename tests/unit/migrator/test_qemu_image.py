"""migrator.qemu image building, pure parts: module order, the newc archive, apt's answers, the
digest of the inputs, and a cached image found without building (nor asking apt to download)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess

import pytest

from migrator.qemu import debs, image
from migrator.qemu.debs import ImageError
from migrator.qemu.image import GuestImage, ImageInputs, build_image, find_image
from migrator.qemu.initramfs import (
    NIC_MODULES,
    Entry,
    ModuleError,
    gzip_archive,
    module_name,
    module_order,
    newc_archive,
    read_newc,
)

# The shape depmod writes for Debian's 6.1 kernel (every dependency listed, in no useful order).
MODULES_DEP = """\
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko \
kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko \
kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko \
kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko \
kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/e1000/e1000.ko:
"""


def test_nic_modules_in_dependency_order():
    order = module_order(MODULES_DEP, NIC_MODULES)
    names = [module_name(p) for p in order]
    assert sorted(names) == sorted(["virtio", "virtio_ring", "virtio_pci_modern_dev",
                                    "virtio_pci_legacy_dev", "virtio_pci", "failover",
                                    "net_failover", "virtio_net"]), names
    deps = {line.split(":")[0]: line.split(":")[1].split()
            for line in MODULES_DEP.replace("\\\n", "").splitlines()}
    for i, path in enumerate(order):
        for dep in deps[path]:
            assert order.index(dep) < i, f"{path} loaded before its dependency {dep}: {names}"
    assert "virtio_blk" not in names and "e1000" not in names


def test_module_order_errors():
    with pytest.raises(ModuleError, match="virtio_gpu"):
        module_order(MODULES_DEP, ["virtio_gpu"])
    with pytest.raises(ModuleError, match="needed by"):
        module_order("a.ko: b.ko\n", ["a"])
    with pytest.raises(ModuleError, match="cycle"):
        module_order("a.ko: b.ko\nb.ko: a.ko\n", ["a"])
    with pytest.raises(ModuleError, match="line 2"):
        module_order("a.ko:\nnonsense\n", ["a"])
    assert module_name("kernel/x/virtio-net.ko.xz") == "virtio_net"


ENTRIES = [Entry("bin", 0o755), Entry("bin/busybox", 0o755, b"\x7fELF" + bytes(range(256))),
           Entry("bin/sh", link="busybox"), Entry("init", 0o755, b"#!/bin/sh\n"),
           Entry("etc", 0o755), Entry("etc/empty", 0o644, b"")]


def test_newc_archive_reads_back_and_is_reproducible():
    archive = newc_archive(ENTRIES)
    members = read_newc(archive)
    assert [m[0] for m in members] == [e.path for e in ENTRIES]
    assert members[1][2] == ENTRIES[1].data and members[2][2] == b"busybox"
    assert oct(members[0][1]) == "0o40755" and oct(members[2][1]) == "0o120777"
    assert oct(members[3][1]) == "0o100755"
    assert len(archive) % 4 == 0
    assert gzip_archive(archive) == gzip_archive(newc_archive(ENTRIES)), "not reproducible"
    with pytest.raises(ValueError):
        newc_archive([Entry("../etc/passwd", data=b"x")])


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio is not installed")
def test_newc_archive_is_what_cpio_reads():
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=newc_archive(ENTRIES),
                             capture_output=True, check=True).stdout.decode().split()
    assert listing == [e.path for e in ENTRIES]


def test_apt_answers_parsed():
    show = ("Package: linux-image-amd64\nVersion: 6.1.192-3\n"
            "Depends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)\n")
    assert debs.parse_show(show) == ("linux-image-6.1.0-57-amd64", "6.1.192-3")
    assert debs.parse_show("Depends: linux-image-6.1.0-9-amd64\n") == (
        "linux-image-6.1.0-9-amd64", None)
    with pytest.raises(ImageError, match="apt-get update"):
        debs.parse_show("Package: linux-image-amd64\n")
    policy = "linux-image-6.1.0-57-amd64:\n  Installed: (none)\n  Candidate: 6.1.192-3\n"
    assert debs.parse_candidate(policy, "x") == "6.1.192-3"
    with pytest.raises(ImageError, match="no candidate"):
        debs.parse_candidate("x:\n  Candidate: (none)\n", "x")
    assert debs.release_of("linux-image-6.1.0-57-amd64") == "6.1.0-57-amd64"
    with pytest.raises(ImageError):
        debs.release_of("linux-headers-6.1")


def test_run_names_what_failed():
    with pytest.raises(ImageError, match="compiling: no-such-tool-wanmig is not installed"):
        debs.run(["no-such-tool-wanmig"], "compiling")
    with pytest.raises(ImageError, match=r"listing: ls /nonexistent-wanmig exited with 2"):
        debs.run(["ls", "/nonexistent-wanmig"], "listing")


INPUTS = ImageInputs("linux-image-6.1.0-57-amd64", "6.1.192-3", "1:1.35.0-4", "a" * 64,
                     "b" * 64)


def test_digest_changes_with_every_input():
    digests = {INPUTS.digest()}
    for field in dataclasses.fields(ImageInputs):
        value = getattr(INPUTS, field.name)
        changed = value + 1 if isinstance(value, int) else value + "x"
        digests.add(dataclasses.replace(INPUTS, **{field.name: changed}).digest())
    assert len(digests) == 1 + len(dataclasses.fields(ImageInputs))
    assert INPUTS.digest() == dataclasses.replace(INPUTS).digest()
    assert INPUTS.kernel_release == "6.1.0-57-amd64"


def test_real_inputs_follow_the_agent_sources(monkeypatch, tmp_path):
    monkeypatch.setattr(debs, "kernel_package", lambda: ("linux-image-6.1.0-57-amd64", "1"))
    monkeypatch.setattr(debs, "busybox_version", lambda: "1")
    for name in ("agent.c", "init"):
        shutil.copy(image.AGENT_DIR / name, tmp_path / name)
    monkeypatch.setattr(image, "AGENT_DIR", tmp_path)
    before = image.current_inputs().digest()
    (tmp_path / "init").write_text((tmp_path / "init").read_text() + "# changed\n")
    assert image.current_inputs().digest() != before


def _cached(tmp_path, inputs: ImageInputs) -> GuestImage:
    folder = tmp_path / inputs.digest()
    folder.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.gz"):
        (folder / name).write_bytes(b"x" * 10)
    built = GuestImage(inputs.digest(), folder / "vmlinuz", folder / "initrd.gz",
                       inputs.kernel_package, inputs.kernel_version, inputs.kernel_release,
                       inputs.busybox_version, ("virtio",), 1.0, 2.0)
    (folder / "image.json").write_text(json.dumps(built.to_json()))
    return built


def test_up_to_date_image_is_found_without_downloading(monkeypatch, tmp_path):
    monkeypatch.setenv("WANMIG_GUEST_CACHE", str(tmp_path))
    monkeypatch.setattr(image, "current_inputs", lambda: INPUTS)

    def no_download(*_a):
        raise AssertionError("apt-get download called for an up-to-date image")
    monkeypatch.setattr(debs, "download_kernel", no_download)
    assert find_image() is None
    built = _cached(tmp_path, INPUTS)
    assert find_image() == built and build_image() == built
    assert build_image().size_bytes() == 20
    (tmp_path / INPUTS.digest() / "initrd.gz").unlink()
    assert find_image() is None, "an image with a file missing is not an image"


def test_old_images_are_removed(tmp_path):
    old = _cached(tmp_path, dataclasses.replace(INPUTS, builder_version=0))
    new = _cached(tmp_path, INPUTS)
    (tmp_path / ".abandoned-staging").mkdir()
    (tmp_path / "unrelated").mkdir()
    image._remove_others(tmp_path, keep=new.digest)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([new.digest, "unrelated"])
    assert not old.kernel.exists()
