"""The Debian packages the guest image is made of, asked of apt and dpkg (a thin adapter).

Which kernel: the package apt's candidate of ``linux-image-amd64`` depends on, at the version
it pins (``apt-cache show --no-all-versions``; ``apt-cache policy`` when it pins none); both
are read from apt's local lists, nothing is downloaded.  Which busybox: the installed
``busybox-static`` (``dpkg-query``).  Only ``download_kernel`` reaches the network (``apt-get
download`` of that one package into a folder of ours; the kernel is never installed on the
host), and ``extract`` unpacks it with ``dpkg-deb -x``; ``depmod`` indexes its modules there.
Every failure is an ``ImageError`` naming the command.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from ground.errors import NotAsAskedError

KERNEL_META = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
BUSYBOX = Path("/bin/busybox")
_TAIL = 300


class ImageError(NotAsAskedError):
    """The guest image cannot be built or found (a tool missing, apt failing, a file absent)."""


def run(cmd: list[str], what: str, cwd: Path | None = None, timeout: float = 600) -> str:
    """``cmd``'s standard output; ImageError naming ``what`` and the command otherwise."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except FileNotFoundError:
        raise ImageError(f"{what}: {cmd[0]} is not installed (make setup installs it)") from None
    except subprocess.TimeoutExpired:
        raise ImageError(f"{what}: {' '.join(cmd)} took more than {timeout:g} s") from None
    if done.returncode != 0:
        err = " ".join((done.stderr or done.stdout).split())[-_TAIL:]
        raise ImageError(f"{what}: {' '.join(cmd)} exited with {done.returncode}: {err}")
    return done.stdout


def parse_show(text: str, meta: str = KERNEL_META) -> tuple[str, str | None]:
    """(kernel package, its pinned version or None) from ``apt-cache show`` of the meta
    package's candidate: its ``Depends: linux-image-<release> (= <version>)``."""
    match = re.search(r"^Depends:.*?\b(linux-image-[^\s,(|]+)\s*(?:\(\s*=\s*([^\s)]+)\s*\))?",
                      text, re.MULTILINE)
    if not match:
        raise ImageError(f"apt-cache show {meta}: names no linux-image package it depends on "
                         "(apt-get update?)")
    return match.group(1), match.group(2)


def parse_candidate(text: str, package: str) -> str:
    """The candidate version in ``apt-cache policy`` output."""
    match = re.search(r"^\s*Candidate:\s*(\S+)", text, re.MULTILINE)
    if not match or match.group(1) == "(none)":
        raise ImageError(f"apt-cache policy {package}: no candidate version (apt-get update?)")
    return match.group(1)


def release_of(package: str) -> str:
    """``linux-image-6.1.0-57-amd64`` -> ``6.1.0-57-amd64`` (the kernel's ``uname -r``)."""
    prefix = "linux-image-"
    if not package.startswith(prefix) or len(package) == len(prefix):
        raise ImageError(f"{package}: not a linux-image-<release> package")
    return package[len(prefix):]


def kernel_package() -> tuple[str, str]:
    """(package, version) of the kernel apt would install for ``linux-image-amd64``."""
    what = "finding the guest kernel"
    name, version = parse_show(run(["apt-cache", "show", "--no-all-versions", KERNEL_META],
                                   what))
    if version is None:
        version = parse_candidate(run(["apt-cache", "policy", name], what), name)
    return name, version


def busybox_version() -> str:
    """The installed busybox-static's version; ImageError when it is not installed."""
    out = run(["dpkg-query", "-W", "-f", "${Status} ${Version}", BUSYBOX_PACKAGE],
              f"finding {BUSYBOX_PACKAGE}")
    if "ok installed" not in out:
        raise ImageError(f"{BUSYBOX_PACKAGE} is not installed (make setup installs it)")
    if not BUSYBOX.is_file():
        raise ImageError(f"{BUSYBOX} is missing although {BUSYBOX_PACKAGE} is installed")
    return out.split()[-1]


def download_kernel(name: str, version: str, into: Path) -> Path:
    """The kernel package's .deb, downloaded by apt into ``into``."""
    run(["apt-get", "download", "-q", f"{name}={version}"], f"downloading {name}", cwd=into)
    debs = sorted(into.glob(f"{name}_*.deb"))
    if not debs:
        raise ImageError(f"apt-get download {name}={version} left no .deb in {into}")
    return debs[0]


def extract(deb: Path, into: Path) -> None:
    """The package's files unpacked under ``into`` (nothing is installed)."""
    run(["dpkg-deb", "-x", str(deb), str(into)], f"unpacking {deb.name}")


def depmod(root: Path, release: str) -> str:
    """modules.dep of the kernel unpacked under ``root`` (made by depmod there)."""
    tool = shutil.which("depmod") or next(
        (str(p) for p in (Path("/usr/sbin/depmod"), Path("/sbin/depmod")) if p.exists()),
        "depmod")
    run([tool, "-b", str(root), release], f"indexing the modules of {release}")
    return (root / "lib" / "modules" / release / "modules.dep").read_text()
