"""The ``wanmig`` command: one entry point, a subcommand per task, each part's own.

It only collects the parts' subcommands (``add_subcommands`` of topologies, migrator and
experiments) and turns what went wrong into an exit status, in one place
(``ground.errors.exit_status``): 0 success, 1 the machine, the link or the run is not what was
asked, 2 bad input (nothing was started), 130 interrupted (everything torn down).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable

from experiments import cli as experiments_cli
from ground.config import ConfigError
from ground.errors import Exit, exit_status
from migrator import cli as migrator_cli
from topologies import cli as topologies_cli

PARTS = (topologies_cli, migrator_cli, experiments_cli)


def _sigterm_to_interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wanmig", description="long-distance live VM migration "
                                                           "testbed")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for part in PARTS:
        part.add_subcommands(sub)
    return p


def _message(exc: BaseException, status: Exit) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "wanmig: interrupted; everything was torn down"
    if isinstance(exc, ConfigError):
        return f"wanmig: bad input: {exc}"
    return f"wanmig: {exc}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args))
    except BaseException as exc:  # noqa: BLE001 - mapped to a status, or raised again
        status = exit_status(exc)
        if status is None:
            raise
        print(_message(exc, status), file=sys.stderr)
        return int(status)


if __name__ == "__main__":
    sys.exit(main())
