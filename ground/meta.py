"""Metadata written before a run starts: code version, packages, machine, time."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

from ground.config import ConfigError

PACKAGES = ("wanmig", "mininet", "os-ken", "scapy", "numpy", "pyyaml", "zstandard", "lz4", "xxhash",
            "cryptography")
REPO = Path(__file__).resolve().parent.parent


def git_summary() -> dict:
    def git(*args: str) -> str:
        res = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                             check=False)
        return res.stdout.strip() if res.returncode == 0 else ""
    return {"commit": git("rev-parse", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    for tool, args in (("ovs", ["ovs-vsctl", "--version"]), ("iperf3", ["iperf3", "--version"])):
        try:
            res = subprocess.run(args, capture_output=True, text=True, check=False, timeout=5)
            out[tool] = res.stdout.splitlines()[0] if res.stdout else None
        except (OSError, subprocess.TimeoutExpired):
            out[tool] = None
    return out


def run_metadata(argv: list[str] | None = None) -> dict:
    return {"started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "argv": argv if argv is not None else sys.argv,
            "git": git_summary(), "versions": versions(),
            "host": {"kernel": platform.release(), "machine": platform.machine(),
                     "cpus": os.cpu_count()}}


def results_root() -> Path:
    return Path(os.environ.get("WANMIG_RESULTS", REPO / "results"))


def new_run_dir(name: str, root: Path | None = None) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = (root or results_root()) / f"{stamp}-{name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def out_dir(requested: str | None, name: str, arg: str = "--out") -> Path:
    """The folder a command writes into: ``requested`` (new or empty; made here), else a new
    ``results/<time>-<name>``."""
    if not requested:
        return new_run_dir(name)
    out = Path(requested)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(arg, requested, "a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    return out
