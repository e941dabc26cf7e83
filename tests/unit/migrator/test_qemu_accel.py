"""migrator.qemu.accel: the verdict from what the probe saw, and its cache per host boot."""

from __future__ import annotations

import pytest

from migrator.qemu import accel
from migrator.qemu.accel import AccelChoice, AccelError, Boot, choose


def test_kvm_that_boots_is_chosen():
    choice = choose(None, Boot(2.5), None)
    assert (choice.name, choice.boot_s, choice.kvm_boot_s) == ("kvm", 2.5, 2.5)
    assert "KVM booted" in choice.reason


def test_tcg_when_kvm_cannot_open_or_hangs_says_why():
    choice = choose("/dev/kvm cannot be opened read-write: Permission denied", None, Boot(9.0))
    assert choice.name == "tcg" and choice.boot_s == 9.0
    assert "Permission denied" in choice.reason
    hung = choose(None, Boot(None, "console: (empty)"), Boot(11.0))
    assert hung.name == "tcg" and hung.kvm_boot_s is None
    assert "KVM did not boot the image within 20 s (console: (empty))" in hung.reason


def test_nothing_boots_is_an_error_naming_both():
    with pytest.raises(AccelError, match="KVM did not boot.*TCG did not boot it either.*oops"):
        choose(None, Boot(None, "hung"), Boot(None, "oops"))
    with pytest.raises(AccelError, match="no accelerator"):
        choose("no /dev/kvm", None, None)


def test_kvm_open_error_names_the_device(tmp_path):
    missing = tmp_path / "kvm"
    assert "cannot be opened read-write" in accel.kvm_open_error(missing)
    writable = tmp_path / "file"
    writable.write_bytes(b"")
    assert accel.kvm_open_error(writable) is None


def test_verdict_cached_under_its_key(monkeypatch, tmp_path):
    monkeypatch.setenv("WANMIG_STATE_DIR", str(tmp_path))
    key = accel.cache_key("abc", "7.2.22", "6.18.0")
    assert accel.cached_choice(key) is None
    choice = AccelChoice("tcg", "TCG booted the image in 9.0 s; KVM hung", 9.0)
    accel._store(key, choice)
    assert accel.cached_choice(key) == choice
    assert accel.cached_choice(accel.cache_key("abc", "8.0.0", "6.18.0")) is None
    (tmp_path / accel.CACHE_NAME).write_text("{not json")
    assert accel.cached_choice(key) is None, "a damaged cache is no verdict"


def test_probe_uses_the_cache_without_booting(monkeypatch, tmp_path):
    monkeypatch.setenv("WANMIG_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(accel, "qemu_version", lambda: "7.2.22")

    class Image:
        digest = "d1"

    def no_boot(*_a):
        raise AssertionError("booted although a verdict was cached")
    monkeypatch.setattr(accel, "_boot", no_boot)
    key = accel.cache_key("d1", "7.2.22", accel.platform.release())
    accel._store(key, AccelChoice("kvm", "KVM booted the image in 1.0 s", 1.0, 1.0))
    assert accel.probe_accel(Image()).name == "kvm"   # type: ignore[arg-type]


def test_describe_says_what_is_missing(monkeypatch, tmp_path):
    from migrator.qemu import status

    monkeypatch.setattr(status.shutil, "which", lambda _name: None)
    out = status.describe()
    assert out["image"]["built"] is False and "not installed" in out["accel"]["reason"]
    monkeypatch.setattr(status.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(status, "qemu_version", lambda: "7.2.22")
    monkeypatch.setattr(status, "find_image", lambda: None)
    out = status.describe(probe=True)
    assert out["qemu"] == "7.2.22" and "not built" in out["image"]["error"]
    assert out["accel"]["name"] is None
