"""Running a subcommand through the ``wanmig`` command in a test, as a user would."""

from __future__ import annotations

import signal

from wanmig.cli import main


def run_wanmig(argv, capsys, tmp_path, monkeypatch):
    """(exit status, stderr) of ``wanmig argv``; results under ``tmp_path``; the SIGTERM
    handler ``main`` installs is put back."""
    monkeypatch.setenv("WANMIG_RESULTS", str(tmp_path / "results"))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code, capsys.readouterr().err
