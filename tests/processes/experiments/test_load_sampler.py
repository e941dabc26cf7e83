"""The load sampler against a process whose load is known: one busy loop is one core, in its
part's column, and a row's parts add up to what the machine was busy with."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time

import pytest

from experiments.load.parts import PARTS
from experiments.load.sampler import COLUMNS, LoadSampler, read_samples

SPIN = "import time\nt = time.time() + 30\nwhile time.time() < t: pass\n"


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores: one to spin, one left")
def test_one_busy_loop_is_one_core_in_its_parts_column(tmp_path):
    path = tmp_path / "testbed_cpu.csv"
    # The mark in its command line makes it a client (experiments.load.parts).
    spin = subprocess.Popen([sys.executable, "-c", SPIN, "experiments.clients"])
    try:
        time.sleep(0.5)
        with LoadSampler(path, period_s=1.0) as sampler:
            time.sleep(3.6)
    finally:
        spin.kill()
        spin.wait()
    rows = list(csv.DictReader(open(path)))
    assert tuple(rows[0]) == COLUMNS
    context = f"rows {rows}"
    assert len(rows) >= 3, context
    cores = os.cpu_count()
    for r in rows:
        clients = float(r["clients"])
        assert 0.8 <= clients <= 1.1, f"a busy loop measured {clients} cores\n{context}"
        parts = sum(float(r[p]) for p in PARTS) + float(r["kernel"])
        busy = float(r["busy_cores"])
        assert parts == pytest.approx(busy, abs=0.15), f"parts {parts}, busy {busy}\n{context}"
        assert busy + float(r["idle_cores"]) == pytest.approx(cores, abs=0.05), context
        assert float(r["idle_cores"]) <= cores - 0.8, context
    assert [s.parts["clients"] for s in read_samples(path)] == \
        [float(r["clients"]) for r in rows]
    assert len(sampler.samples) == len(rows)
