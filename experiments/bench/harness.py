"""One harness for every benchmark: one result layout, one verdict format.

Every benchmark writes ``results/bench/<time>-<name>/`` (under ``$WANMIG_RESULTS`` if set)::

    bench.json   {"name", "title", "meta", "rows": [...], "verdicts": [...], "ok"}
                 rewritten after every row, so an interrupted benchmark keeps what it measured
    table.md     the title, the table, every verdict, a footer (printed too)
    runs/        each measured run's own files (network logs, experiment folders)

A verdict is one measured figure against its target, always shown the same way:
``93 % ok (>= 90 %)`` or ``79 % MISSED (>= 80 %)``; a figure taken on a testbed-bound run (the
machine near its limit during the migration: ``experiments.load``; a row says so with
``testbed_bound``) adds ``[testbed-bound]``, so no verdict hides that the testbed measured
itself. A benchmark exits 0 when every verdict is ok,
1 when a target was missed (the table says which), 2 when it could not run here.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ground.errors import Exit, exit_status, need_root
from ground.meta import new_run_dir, results_root, run_metadata
from ground.table import render

log = logging.getLogger("wanmig.bench")


@dataclass(frozen=True)
class Verdict:
    what: str           # the figure: "goodput, 150 ms, 100 Mbit/s"
    value: str          # as measured, with its unit: "93 %"
    target: str         # ">= 90 %"
    ok: bool
    testbed_bound: bool = False     # taken on a run whose machine was near its limit

    def cell(self) -> str:
        bound = " [testbed-bound]" if self.testbed_bound else ""
        return f"{self.value} {'ok' if self.ok else 'MISSED'} ({self.target}){bound}"


def at_least(what: str, value: float, target: float, fmt: str = ".2f", unit: str = ""
             ) -> Verdict:
    return Verdict(what, f"{value:{fmt}}{unit}", f">= {target:{fmt}}{unit}", value >= target)


def at_most(what: str, value: float, target: float, fmt: str = ".2f", unit: str = ""
            ) -> Verdict:
    return Verdict(what, f"{value:{fmt}}{unit}", f"<= {target:{fmt}}{unit}", value <= target)


def holds(what: str, value: str, target: str, ok: bool) -> Verdict:
    """A verdict that is not a comparison of two numbers (an outcome, a digest)."""
    return Verdict(what, value, target, ok)


def testbed(why: str) -> tuple[Any, Any]:
    """What this machine offers and the backends chosen, for a benchmark that builds networks;
    UsageError (exit 2) when not root or when the testbed cannot run here."""
    from topologies.cli import ready_choice

    need_root(f"{why} (sudo make bench)")
    return ready_choice()


def _sigterm_to_interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt


def entry(main: Callable[[], int]) -> int:
    """A benchmark's exit status, its errors mapped as the wanmig command maps them
    (``ground.errors.exit_status``): a message, not a traceback, for what is not a bug.
    SIGTERM is an interrupt, as for the wanmig command: whatever the benchmark built is torn
    down (a terminated benchmark once left its network behind)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        return int(main())
    except BaseException as exc:  # noqa: BLE001 - mapped to a status, or raised again
        status = exit_status(exc)
        if status is None:
            raise
        print(f"bench: {exc}" if str(exc) else "bench: interrupted", file=sys.stderr)
        return int(status)


def attempt(run: Callable[[str], dict], what: str, tries: int = 2
            ) -> tuple[dict | None, list[str]]:
    """``run(label)``'s metrics (``label`` is ``what``, then ``what-try2``, ...: each try in a
    folder of its own), made again (at most ``tries`` times in all) when it stops with a
    RunError before measuring anything: the link preflight found the WAN not as asked (on this
    2-core machine a 250 Mbit/s link measures 255-266 Mbit/s now and then), or the network did
    not come up. Returns the metrics (None if every try failed) and each failure's message, for
    the row: a retry is recorded, never hidden."""
    from experiments.runner import RunError

    errors: list[str] = []
    for i in range(1, tries + 1):
        try:
            return run(what if i == 1 else f"{what}-try{i}"), errors
        except RunError as exc:
            errors.append(str(exc)[:300])
            log.warning("%s, try %d of %d: %s", what, i, tries, exc)
    return None, errors


class Bench:
    """``bench = Bench("link", "WAN link benchmark")``; ``bench.add(row, *verdicts)`` per
    measurement; ``return bench.finish(table_text)``."""

    def __init__(self, name: str, title: str, argv: list[str] | None = None,
                 meta: dict | None = None) -> None:
        self.name, self.title = name, title
        self.out = new_run_dir(name, results_root() / "bench")
        self.meta = {**run_metadata(argv if argv is not None else sys.argv), **(meta or {})}
        self.rows: list[dict] = []
        self.verdicts: list[Verdict] = []
        self.save()

    def run_dir(self, label: str) -> Path:
        """Where one measured run keeps its own files."""
        path = self.out / "runs" / label
        path.mkdir(parents=True, exist_ok=True)
        return path

    def add(self, row: dict, *verdicts: Verdict) -> None:
        """A measured row and the verdicts taken on it (marked when the row's run was
        testbed-bound)."""
        self.rows.append(row)
        if row.get("testbed_bound"):
            verdicts = tuple(replace(v, testbed_bound=True) for v in verdicts)
        self.verdicts.extend(verdicts)
        self.save()

    def judge(self, *verdicts: Verdict) -> None:
        """Verdicts on the rows as a whole (a median over many rows, say)."""
        self.verdicts.extend(verdicts)
        self.save()

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)

    def save(self) -> None:
        doc: dict[str, Any] = {"name": self.name, "title": self.title, "meta": self.meta,
                               "rows": self.rows,
                               "verdicts": [asdict(v) for v in self.verdicts], "ok": self.ok}
        (self.out / "bench.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")

    def verdict_table(self) -> str:
        return render(("target", "measured"), [(v.what, v.cell()) for v in self.verdicts])

    def finish(self, table: str, footer: str = "") -> Exit:
        """table.md written and printed; the exit status the verdicts say."""
        self.save()
        parts = [f"# {self.title}", "", "```", table, "```"]
        if self.verdicts:
            missed = sum(not v.ok for v in self.verdicts)
            bound = sum(v.testbed_bound for v in self.verdicts)
            parts += ["", f"Targets: {len(self.verdicts) - missed} of {len(self.verdicts)} met"
                      + (f"; {bound} taken on testbed-bound runs" if bound else ""),
                      "", "```", self.verdict_table(), "```"]
        if footer:
            parts += ["", footer]
        (self.out / "table.md").write_text("\n".join(parts) + "\n")
        print(table)
        if self.verdicts:
            print(self.verdict_table())
        print(f"written: {self.out}")
        return Exit.OK if self.ok else Exit.FAIL
