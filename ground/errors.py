"""What went wrong, said once for every part: the exit status each kind of error means.

Every part raises these (or its own subclasses of them); only the ``wanmig`` command turns them
into an exit status, in one place (``exit_status``). ``ConfigError`` (bad input) is the config
schema's own error and lives in ``ground.config``.
"""

from __future__ import annotations

import enum
import os

from ground.config import ConfigError


class Exit(enum.IntEnum):
    """The ``wanmig`` command's exit statuses."""

    OK = 0              # done, and what was measured is what was asked
    FAIL = 1            # the machine, the link or the run is not what was asked
    INPUT = 2           # bad input: nothing was started
    INTERRUPTED = 130   # Ctrl-C or SIGTERM: everything was torn down


class UsageError(RuntimeError):
    """A request that cannot run on this machine (not root, a missing tool): nothing was
    started."""


class NotAsAskedError(RuntimeError):
    """The machine, the link or the run is not what was asked (a link that cannot be shaped, a
    preflight that finds the WAN off, a process that never came up). Parts subclass it."""


def exit_status(exc: BaseException) -> Exit | None:
    """The exit status an error means; None for an error that is a bug (shown with its
    traceback)."""
    if isinstance(exc, (ConfigError, UsageError)):
        return Exit.INPUT
    if isinstance(exc, KeyboardInterrupt):
        return Exit.INTERRUPTED
    if isinstance(exc, NotAsAskedError):
        return Exit.FAIL
    return None


def need_root(why: str) -> None:
    """UsageError unless this process is root; ``why`` says what needs it."""
    if os.geteuid() != 0:
        raise UsageError(f"{why}: run it as root (sudo)")
