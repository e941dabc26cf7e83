"""`wanmig clean` removes VM memory images left behind, never one a live process maps."""

from __future__ import annotations

from migrator.guest.image import GuestMemory, clean_images, leftover_segments


def test_mapped_images_are_kept_and_unmapped_ones_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("WANMIG_SHM_DIR", str(tmp_path))
    live = GuestMemory.create("cleanlive", "src", 8, tracking=True)
    dead = GuestMemory.create("cleandead", "src", 8, tracking=True)
    dead.close()                                   # crashed run: files stay, nobody maps them
    try:
        actions = clean_images()
        left = leftover_segments()
        assert all(n.startswith("wanmig-cleanlive-") for n in left), (left, actions)
        assert len(left) == 3, (left, actions)
        assert any("removed VM memory wanmig-cleandead-src.ram" == a for a in actions), actions
        assert clean_images(include_live=True) and leftover_segments() == []
    finally:
        live.close()
