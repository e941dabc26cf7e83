"""Shared test set-up: results and cleanup records go to temporary folders, never the repo's."""

from __future__ import annotations

import os
import signal

import pytest

# A suite started in the background of a non-interactive shell (``make test &``) inherits SIGINT
# ignored, and so would every command it starts: the Ctrl-C tests would then test nothing the
# researcher's terminal does. A handler (not SIG_IGN) is reset to the default across exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("WANMIG_RESULTS", str(tmp_path_factory.mktemp("results")))
    if os.geteuid() != 0:
        monkeypatch.setenv("WANMIG_STATE_DIR", str(tmp_path_factory.mktemp("state")))
