"""Shared test set-up: results and cleanup records go to temporary folders, never the repo's."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("WANMIG_RESULTS", str(tmp_path_factory.mktemp("results")))
    if os.geteuid() != 0:
        monkeypatch.setenv("WANMIG_STATE_DIR", str(tmp_path_factory.mktemp("state")))
