"""Sweeps: one base experiment, a grid of values at key paths, every run validated up front.

Why validate every combination before the first run: a sweep takes an hour; finding at run 37
that ``rtt_ms: 0`` with ``jitter_ms: 5`` is impossible would waste it. ``expand`` parses every
combination with the experiment schema and names the grid key and value that broke it.

Example::

    name: rtt-sweep
    base: quickstart.yaml            # an experiment file (relative to this file) or a mapping
    grid:
      wan.rtt_ms: [0, 25, 50, 100, 150]
      policy.codec: [none, adaptive]
    repetitions: 3                   # default: the base experiment's repetitions

Key paths address the base experiment's raw mapping: dots between keys, ``[i]`` for list items
(``topology.wan[0].rtt_ms``, ``vm.workload.dirty_rate_mibps``, ``policy.streams``). The
topology is inlined first (a file named by ``topology:`` is read), so its keys are reachable
under ``topology.``; a missing mapping or list on the way is created empty (``wan[0]`` of the
default two-site topology is ``{}``); a workload given as a preset name (or left to the
default, web) becomes ``{preset: <name>}`` so its fields are swept from that preset.
Alias: ``wan.<key>`` means ``topology.wan[0].<key>`` and is accepted only when the topology
has exactly one WAN link (with several it would be ambiguous: write the index). ``name``,
``repetitions`` and ``seed`` cannot be swept (repetitions are the sweep's own).

Repetition r of a combination runs with seed ``base seed + r`` (fresh workload and client
randomness, same network), so error bars over repetitions measure run-to-run variation.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from experiments.spec import (
    DEFAULT_NAME,
    DEFAULT_WORKLOAD,
    NAME_RE,
    ExperimentSpec,
    parse_experiment,
    resolved_dict,
    spec_file,
    topology_data,
)
from ground.config import ConfigError, Section
from ground.yamlfile import read_yaml

KEYS = ("name", "description", "base", "grid", "repetitions")
MAX_RUNS = 1000
MAX_REPETITIONS = 100
_TOKEN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[[0-9]+\])*)")
_UNSWEEPABLE = ("name", "repetitions", "seed", "description")

Token = str | int


@dataclass(frozen=True)
class SweepSpec:
    name: str
    description: str
    base: dict                            # raw experiment mapping, topology inlined
    base_dir: Path | None                 # where the base's relative names are resolved
    grid: tuple[tuple[str, tuple[Any, ...]], ...]   # (key path as written, values), in order
    repetitions: int


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep; unpacks as ``(run_name, spec, values)``."""

    run_name: str
    spec: ExperimentSpec
    values: dict          # key path (as written in the grid) -> value, plus 'repetition'

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter((self.run_name, self.spec, self.values))


def parse_key_path(key: Any, path: str) -> list[Token]:
    """``'topology.wan[0].rtt_ms'`` -> ``['topology', 'wan', 0, 'rtt_ms']``."""
    expected = ("a key path: keys separated by dots, list items as [i] "
                "(e.g. topology.wan[0].rtt_ms or policy.codec)")
    if not isinstance(key, str) or not key:
        raise ConfigError(path, key, expected)
    tokens: list[Token] = []
    for part in key.split("."):
        m = _TOKEN_RE.fullmatch(part)
        if not m:
            raise ConfigError(path, key, expected)
        tokens.append(m.group(1))
        tokens += [int(i) for i in re.findall(r"\[([0-9]+)\]", m.group(2))]
    if len(tokens) < 2 or tokens[0] in _UNSWEEPABLE:
        raise ConfigError(path, key, expected + "; inside a section (vm, policy, topology, ...)"
                          f", not one of {', '.join(_UNSWEEPABLE)}")
    return tokens


def resolve_alias(tokens: list[Token], base: dict, path: str, key: str) -> list[Token]:
    """``wan.<key>`` -> ``topology.wan[0].<key>`` when the topology has exactly one WAN link."""
    if tokens[0] != "wan":
        return tokens
    if isinstance(tokens[1], int):
        return ["topology", *tokens]
    topo = base.get("topology") or {}
    wan = topo.get("wan") if isinstance(topo, dict) else None
    count = len(wan) if isinstance(wan, list) else 1   # no wan: the default single link
    if count != 1:
        rest = ".".join(map(str, tokens[1:]))
        raise ConfigError(path, key, f"an unambiguous key path: the topology has {count} WAN "
                                     f"links, write topology.wan[i].{rest}")
    return ["topology", "wan", 0, *tokens[1:]]


def set_path(data: dict, tokens: list[Token], value: Any, path: str, key: str) -> None:
    """Set ``value`` at ``tokens`` inside ``data`` (changed in place), creating empty mappings
    and lists on the way; a workload preset name becomes ``{preset: name}``."""
    node: Any = data
    for i, (tok, nxt) in enumerate(itertools.pairwise(tokens)):
        child_default: Any = [] if isinstance(nxt, int) else {}
        if isinstance(tok, int):
            if not isinstance(node, list):
                raise ConfigError(path, key, f"a key path whose item [{tok}] is in a list")
            while len(node) <= tok:
                node.append({} if not isinstance(nxt, int) else [])
            if node[tok] is None:
                node[tok] = child_default
            node = node[tok]
            continue
        if not isinstance(node, dict):
            raise ConfigError(path, key, f"a key path whose {tok!r} is inside a mapping")
        if tokens[:i + 1] == ["vm", "workload"]:
            # The fields of a preset (named, or the default) are swept from that preset.
            if node.get(tok) is None:
                node[tok] = DEFAULT_WORKLOAD
            if isinstance(node[tok], str):
                node[tok] = {"preset": node[tok]}
        if node.get(tok) is None:
            node[tok] = child_default
        node = node[tok]
    last = tokens[-1]
    if isinstance(last, int):
        if not isinstance(node, list):
            raise ConfigError(path, key, f"a key path whose item [{last}] is in a list")
        while len(node) <= last:
            node.append(None)
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(path, key, f"a key path whose {last!r} is inside a mapping")


def _base(value: Any, base_dir: Path | None) -> tuple[dict, Path | None, str]:
    """The base experiment's raw mapping with its topology inlined; its folder; its name."""
    name = DEFAULT_NAME
    if value is None:
        data: Any = {}
    elif isinstance(value, str):
        file = spec_file(value, "base", base_dir, "experiment")
        data = read_yaml(file)
        base_dir, name = file.parent, file.stem
    elif isinstance(value, dict):
        data = value
    else:
        raise ConfigError("base", value, "an experiment file name or an inline experiment "
                                         "mapping")
    if not isinstance(data, dict):
        raise ConfigError("base", data, "an experiment mapping")
    data = copy.deepcopy(data)
    raw_topo, source = topology_data(data.get("topology"), "base.topology", base_dir)
    if source != "inline":
        data["topology"] = copy.deepcopy(raw_topo)
    return data, base_dir, name


def parse_sweep(data: Any, base_dir: str | Path | None = None,
                default_name: str = "sweep") -> SweepSpec:
    """Validate a sweep mapping; ``expand`` validates every run it makes."""
    top = Section(data, "", KEYS)
    name = top.string("name", default_name)
    if not NAME_RE.fullmatch(name):
        raise ConfigError("name", name, "1 to 64 characters: letters, digits, '.', '_' or '-'")
    base, bdir, _ = _base(top.data.get("base"),
                          Path(base_dir) if base_dir is not None else None)
    # The base must be valid on its own: its errors are the base's, not the grid's.
    try:
        base_spec = parse_experiment(base, bdir)
    except ConfigError as exc:
        raise ConfigError(f"base.{exc.path}", exc.value, exc.expected) from exc
    raw_grid = top.data.get("grid")
    if not isinstance(raw_grid, dict) or not raw_grid:
        raise ConfigError("grid", raw_grid, "a mapping of key paths to lists of values "
                                            "(at least one key)")
    grid = []
    for key, values in raw_grid.items():
        path = f"grid.{key}"
        parse_key_path(key, path)
        if isinstance(values, (str, bytes)) or not isinstance(values, list) or not values:
            raise ConfigError(path, values, "a non-empty list of values")
        seen = []
        for v in values:
            if v in seen:
                raise ConfigError(path, values, f"distinct values; {v!r} appears twice")
            seen.append(v)
        grid.append((key, tuple(values)))
    reps = top.number("repetitions", base_spec.repetitions, minimum=1, maximum=MAX_REPETITIONS,
                      integer=True)
    combos = 1
    for _, values in grid:
        combos *= len(values)
    if combos * reps > MAX_RUNS:
        raise ConfigError("grid", {k: len(v) for k, v in grid},
                          f"at most {MAX_RUNS} runs in all ({combos} combinations x {reps} "
                          "repetitions)")
    return SweepSpec(name=name, description=top.string("description", ""), base=base,
                     base_dir=bdir, grid=tuple(grid), repetitions=reps)


def load_sweep(path: str | Path) -> SweepSpec:
    file = Path(path)
    data = read_yaml(file)
    return parse_sweep({} if data is None else data, file.parent,
                       default_name=file.stem if NAME_RE.fullmatch(file.stem) else "sweep")


def is_sweep(data: Any) -> bool:
    """A raw YAML mapping is a sweep when it has a ``grid:``."""
    return isinstance(data, dict) and "grid" in data


def _apply(sweep: SweepSpec, combo: dict[str, Any]) -> dict:
    data = copy.deepcopy(sweep.base)
    for key, value in combo.items():
        path = f"grid.{key}"
        tokens = resolve_alias(parse_key_path(key, path), data, path, key)
        set_path(data, tokens, copy.deepcopy(value), path, key)
    return data


def _slug(value: Any) -> str:
    text = re.sub(r"[^A-Za-z0-9.]+", "_", str(value)).strip("_")
    return text[:16] or "x"


def run_name(sweep: SweepSpec, index: int, combo: dict[str, Any], repetition: int) -> str:
    """``<sweep>-<nnn>-<key>_<value>...-r<rep>``: sortable, readable, safe in a folder name and
    a valid experiment name (at most 64 characters: the values are dropped if too long)."""
    parts = [f"{_slug(str(k).split('.')[-1])}_{_slug(v)}" for k, v in combo.items()]
    name = f"{sweep.name}-{index:03d}-{'-'.join(parts)}-r{repetition}"
    if len(name) > 64:   # an experiment name's limit; the values are in swept.json anyway
        name = f"{sweep.name[:48]}-{index:03d}-r{repetition}"
    return name


def expand(sweep: SweepSpec) -> list[SweepRun]:
    """Every run of the sweep (combinations in grid order, repetitions innermost), each spec
    validated; ConfigError names the grid key and value (or the combination) that is wrong."""
    # Each value alone first, so an error points at one key and one value.
    for key, values in sweep.grid:
        for i, value in enumerate(values):
            path = f"grid.{key}[{i}]"
            try:
                parse_experiment(_apply(sweep, {key: value}), sweep.base_dir)
            except ConfigError as exc:
                if exc.path.startswith("grid."):
                    raise
                raise ConfigError(path, value, f"a valid value for {key} ({exc})") from exc
    keys = [k for k, _ in sweep.grid]
    runs: list[SweepRun] = []
    for index, values in enumerate(itertools.product(*(v for _, v in sweep.grid))):
        combo = dict(zip(keys, values, strict=True))
        data = _apply(sweep, combo)
        try:
            spec = parse_experiment(data, sweep.base_dir)
        except ConfigError as exc:
            raise ConfigError("grid", combo, f"a combination that gives a valid experiment "
                                             f"({exc})") from exc
        for rep in range(sweep.repetitions):
            name = run_name(sweep, index, combo, rep)
            run_spec = replace(spec, name=name, repetitions=1, seed=spec.seed_for(rep))
            if (data.get("vm") or {}).get("seed") is None:   # it follows the experiment's
                run_spec = replace(run_spec, vm=replace(spec.vm, seed=run_spec.seed))
            runs.append(SweepRun(name, run_spec, {**combo, "repetition": rep}))
    return runs


def sweep_dict(sweep: SweepSpec) -> dict:
    """The sweep as written to the sweep folder's config.yaml (the base fully resolved)."""
    return {"name": sweep.name, "description": sweep.description,
            "base": resolved_dict(parse_experiment(sweep.base, sweep.base_dir)),
            "grid": {k: list(v) for k, v in sweep.grid},
            "repetitions": sweep.repetitions}
