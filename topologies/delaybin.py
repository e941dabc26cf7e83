"""The compiled delay line (``topologies/relay/*.c``): built by ``make setup``, found by runs.

The binary is named by the digest of its sources (``wanmig-delayline-<digest>``), so a run
never uses one built from other sources: edited sources need ``make setup`` again, and a run
says so (``DelaylineError``) rather than starting a stale relay. It lives in
``$WANMIG_DELAYLINE_DIR`` or the virtual environment's ``libexec/wanmig/`` (a fresh clone
builds its own). ``python -m topologies.delaybin`` builds it when missing (gcc, the C library's
and the kernel's headers: Debian's gcc and libc6-dev, which ``make setup`` installs).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ground.errors import NotAsAskedError

log = logging.getLogger(__name__)


class DelaylineError(NotAsAskedError):
    """The compiled delay line is not built for these sources, or cannot be built."""


SOURCE_DIR = Path(__file__).with_name("relay")
NAME = "wanmig-delayline"          # what ``wanmig clean`` recognises a delay line by
DIR_ENV = "WANMIG_DELAYLINE_DIR"
CFLAGS = ("-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror")


def sources() -> list[Path]:
    return sorted(p for p in SOURCE_DIR.iterdir() if p.suffix in (".c", ".h"))


def digest() -> str:
    """The sources' digest (names and contents) and the flags they are compiled with."""
    h = hashlib.sha256(" ".join(CFLAGS).encode())
    for path in sources():
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def install_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or Path(sys.prefix) / "libexec" / "wanmig")


def path() -> Path:
    return install_dir() / f"{NAME}-{digest()}"


def binary() -> Path:
    """The built delay line for these sources; DelaylineError when it is not built."""
    found = path()
    if not os.access(found, os.X_OK):
        raise DelaylineError(f"the compiled delay line {found} is not built for these "
                              "sources (make setup builds it)")
    return found


def build(force: bool = False) -> Path:
    """Compile the sources unless their binary exists; older builds are removed."""
    out = path()
    if out.exists() and not force:
        log.info("delay line %s is up to date", out.name)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}-", dir=out.parent)
    os.close(fd)
    cmd = ["gcc", *CFLAGS, f'-DSOURCE_DIGEST="{digest()}"', "-o", tmp,
           *[str(p) for p in sources() if p.suffix == ".c"], "-lm"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        os.unlink(tmp)
        raise DelaylineError("compiling the delay line: gcc is not installed "
                              "(make setup installs it)") from None
    if done.returncode != 0:
        os.unlink(tmp)
        raise DelaylineError(f"compiling the delay line failed: {done.stderr.strip()[-2000:]}")
    os.chmod(tmp, 0o755)
    os.replace(tmp, out)
    for old in out.parent.glob(f"{NAME}-*"):
        if old != out:
            old.unlink(missing_ok=True)
    log.info("delay line %s built", out)
    return out


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        build()
    except DelaylineError as exc:
        print(f"delay line: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
