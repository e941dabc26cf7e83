"""Every shipped topology file is valid, and the default file equals the built-in default."""

from __future__ import annotations

from pathlib import Path

import pytest

from topologies.spec import load_topology

EXAMPLES = sorted((Path(__file__).parents[3] / "topologies" / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 3, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path):
    spec = load_topology(path)
    assert len(spec.sites) >= 2 and spec.wan


def test_two_sites_example_is_the_default():
    assert load_topology(EXAMPLES[0].parent / "two_sites.yaml") == load_topology(None)
