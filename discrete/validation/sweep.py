"""A grid of settings x seeds, one run directory each, resumable as a whole.

``SWEEP/sweep.json`` records the common settings, the grid, the seeds and the run names (in run
order: every setting with the first seed, then the next seed, so a sweep cut short still covers
every setting). A run's directory is ``SWEEP/<key>=<value>_..._seed=<s>``. Each run obeys the
directory and resume rules of ``osd-theory validate``; ``--resume`` on the sweep walks the runs
and, per run, skips it (finished, or failed earlier: its ``events.jsonl`` says so), resumes it
(it has a checkpoint), or starts it (again, if it stopped before its first checkpoint).

Everything is checked before the first run starts: each run's full configuration, the directory
rules, the corpus paths. A run that fails (diverges) is reported and the sweep goes on; the
exit status is then 1. SIGTERM/SIGINT stop the current run with a checkpoint and end the sweep.
"""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from discrete.validation.config import DATA, FIELDS, LOCAL, SAFE, RunConfig, flag_of
from discrete.validation.rundir import SWEEP_FILE, DirLock, holds_run, make_dir
from discrete.validation.runlog import EVENTS_NAME, read_json, read_log, write_json
from osd_theory.errors import UserError

SPEC_VERSION = 1
# grid values are single words: these rules parse one value per comma-separated item
GRID_RULES = ("Int", "Real", "Name", "Choice", "Text", "Switch", "Projection", "Device")


@dataclass
class Sweep:
    root: Path
    common: dict  # settings shared by every run (as given on the command line)
    grid: dict    # field -> list of values
    seeds: list

    def points(self) -> list[dict]:
        keys = list(self.grid)
        combos = [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]
        return [{**c, "seed": s} for s in self.seeds for c in combos]

    def name(self, point: dict) -> str:
        text = "_".join(f"{k}={_word(v)}" for k, v in point.items())
        return re.sub(r"[^A-Za-z0-9._=+,-]", "-", text)

    def check_names(self) -> None:
        """Each grid point has a directory of its own (UserError naming the points that would share one)."""
        seen: dict[str, dict] = {}
        for point in self.points():
            name = self.name(point)
            if name in seen:
                raise UserError(f"sweep: grid points {seen[name]} and {point} would share the run directory {name} "
                                "(their values differ only in characters a directory name cannot hold); give values "
                                "that differ in letters or digits")
            seen[name] = point

    def config(self, point: dict) -> RunConfig:
        return RunConfig(**{**self.common, **point, "out": str(self.root / self.name(point))})

    def to_json(self) -> dict:
        return {"version": SPEC_VERSION, "common": self.common, "grid": self.grid, "seeds": self.seeds,
                "runs": [self.name(p) for p in self.points()]}


def _word(v) -> str:
    """A value as it appears in a run name: floats short (``0.01``) unless that would lose digits (``0.1000001``)."""
    if isinstance(v, float):
        return f"{v:g}" if float(f"{v:g}") == v else repr(v)
    return str(v)


def parse_grid(items: list[str], common: dict) -> dict:
    """``["lr=1e-3,3e-3", "optimizer=galore,osd"]`` -> {field: [values]}, each value checked by its rule."""
    grid: dict = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not values.strip():
            raise UserError(f"--grid {item}: must be KEY=VALUE1,VALUE2,...")
        if key == "seed":
            raise UserError("--grid seed=...: give seeds with --seeds 0,1,2")
        f = FIELDS.get(key)
        if f is None or f.metadata["role"] == LOCAL or not f.metadata["cli"] \
                or type(f.metadata["rule"]).__name__ not in GRID_RULES:
            allowed = sorted(n for n, g in FIELDS.items() if g.metadata["role"] != LOCAL and g.metadata["cli"]
                             and n != "seed" and type(g.metadata["rule"]).__name__ in GRID_RULES)
            raise UserError(f"--grid {key}: not a setting a grid can vary; expected one of {allowed}")
        if key in grid:
            raise UserError(f"--grid {key}: given twice")
        if key in common:
            raise UserError(f"{flag_of(key)} is given both as a flag and in --grid")
        rule = f.metadata["rule"]
        parsed = [rule.parse_checked(f"--grid {key}", v.strip()) for v in values.split(",")]
        if len(set(map(repr, parsed))) != len(parsed):
            raise UserError(f"--grid {item}: repeats a value")
        grid[key] = parsed
    return grid


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s, 10) for s in text.split(",")]
    except ValueError:
        raise UserError(f"--seeds {text}: must be comma-separated integers >= 0, e.g. 0,1,2") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text}: must be distinct integers >= 0")
    return seeds


def sweep_runs(root: Path) -> list[Path]:
    """The run directories of a sweep, in run order."""
    return [Path(root) / name for name in read_json(Path(root) / SWEEP_FILE).get("runs", [])]


def load_sweep(root: Path) -> Sweep:
    spec = read_json(Path(root) / SWEEP_FILE)
    common = dict(spec["common"])
    if isinstance(common.get("betas"), list):  # JSON has no tuples
        common["betas"] = tuple(common["betas"])
    return Sweep(Path(root), common, spec["grid"], spec["seeds"])


def merge_resume(saved: Sweep, common: dict, grid: dict, seeds: list | None) -> Sweep:
    """``sweep --resume``: the saved sweep; given grid/seeds must match, given flags may only be safe ones."""
    if grid and grid != saved.grid:
        raise UserError(f"--resume: --grid differs from the sweep in {saved.root} ({saved.grid}); drop --grid")
    if seeds is not None and seeds != saved.seeds:
        raise UserError(f"--resume: --seeds differs from the sweep in {saved.root} ({saved.seeds}); drop --seeds")
    from discrete.validation.identity import require_named_rule

    require_named_rule(saved.common.get("projection"), common)
    if not grid:
        for spec in saved.grid.get("projection", []):
            require_named_rule(spec, {})  # a user rule in the grid: the grid must be given again
    changed = [k for k, v in common.items() if saved.common.get(k, getattr(RunConfig(), k)) != v]
    refused = [flag_of(k) for k in changed if FIELDS[k].metadata["role"] not in (SAFE, DATA)]
    if refused:
        raise UserError(f"--resume: {', '.join(refused)} differ from the sweep in {saved.root}; they define its "
                        "runs, so drop them, or start a new sweep")
    return replace(saved, common={**saved.common, **common})


def status(run_dir: Path, steps: int) -> str:
    """new, done, failed, partial (has a checkpoint) or broken (a run without a checkpoint)."""
    if not holds_run(run_dir):
        return "new"
    if (run_dir / "log.jsonl").is_file() and any(
            r.get("kind") == "eval" and r.get("step", 0) >= steps for r in read_log(run_dir)):
        return "done"
    events = run_dir / EVENTS_NAME
    if events.is_file():
        lines = [ln for ln in events.read_text(errors="replace").splitlines() if ln.strip()]
        try:
            if lines and json.loads(lines[-1]).get("event") == "failed":
                return "failed"
        except ValueError:
            pass
    return "partial" if (run_dir / "checkpoint.pt").is_file() else "broken"


def check(sweep: Sweep, overwrite: bool = False) -> list[RunConfig]:
    """Every run's configuration, fully resolved and checked, before anything runs (names unique; a directory
    that already holds a run must hold this grid point's, unless ``overwrite`` replaces it)."""
    from discrete.validation.corpus import files_split, find_split
    from discrete.validation.resolve import resolve

    sweep.check_names()
    configs, first = [], None
    for point in sweep.points():
        cfg = sweep.config(point)
        try:
            resolved = resolve(replace(cfg))  # a copy: the run resolves its own
        except UserError as exc:
            raise UserError(f"sweep run {sweep.name(point)}: {exc}") from None
        if not overwrite:
            _check_existing(Path(cfg.out), resolved)
        configs.append(cfg)
        first = first or resolved  # resolved: its corpus default filled
    if first.train_files:
        files_split("train", first.train_files)
    else:
        find_split(first.data, "train")
    return configs


def _check_existing(run_dir: Path, resolved: RunConfig) -> None:
    """A directory that already holds a run is this grid point's only if its config.json says so."""
    from discrete.validation.config import DEFINES, SEED, from_json

    if not holds_run(run_dir):
        return
    name = run_dir.name
    if not (run_dir / "config.json").is_file():
        raise UserError(f"sweep run {name}: {run_dir} holds run files but no config.json, so it cannot be matched to "
                        "its grid point; move it away, or choose another --out")
    try:
        saved = from_json(read_json(run_dir / "config.json"))
    except (TypeError, ValueError) as exc:
        raise UserError(f"sweep run {name}: {run_dir / 'config.json'} is not a run config ({exc})") from None
    saved.schedule_steps = saved.schedule_steps or saved.steps
    differ = [f"{flag_of(k)} {getattr(saved, k)} (the grid point: {getattr(resolved, k)})"
              for k, f in FIELDS.items() if f.metadata["role"] in (DEFINES, SEED) and getattr(saved, k) != getattr(resolved, k)]
    if differ:
        raise UserError(f"sweep run {name}: {run_dir} already holds a run with other settings: {'; '.join(differ)}; "
                        "move it away, or choose another --out")


def expected_runs(root: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """The runs a sweep expects, as (name, state: new/done/failed/partial/broken), and notes on sweep.json."""
    spec = read_json(Path(root) / SWEEP_FILE)
    try:
        sweep = load_sweep(root)
        points = sweep.points()
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise UserError(f"{Path(root) / SWEEP_FILE}: not a sweep file ({type(exc).__name__}: {exc})") from None
    names = [sweep.name(p) for p in points]
    notes = []
    listed = spec.get("runs")
    if listed != names:
        notes.append(f"{Path(root) / SWEEP_FILE}: its run list differs from its grid and seeds (edited?); "
                     "the runs of the grid are used")
    out = []
    for point, name in zip(points, names):
        steps = sweep.config(point).steps
        out.append((name, status(Path(root) / name, steps)))
    return out, notes


def run_sweep(sweep: Sweep, *, resume: bool, overwrite: bool, log=print) -> list[tuple[str, str]]:
    """Run (or continue) the sweep; returns the failed runs as (name, message)."""
    from discrete.validation.rundir import check_writable, clear_run
    from discrete.validation.trainer import train

    root = sweep.root
    check_writable(root)
    if (root / SWEEP_FILE).exists() and not (resume or overwrite):
        raise UserError(f"--out {root}: already holds a sweep; pass --resume to continue it, --overwrite to replace "
                        "it, or choose another --out")
    if holds_run(root):
        raise UserError(f"--out {root}: holds a single run, not a sweep; choose another --out")
    configs = check(sweep, overwrite)
    make_dir(root)
    lock = DirLock(root).acquire()
    failures = []
    try:
        if overwrite:
            for d in [root / n for n in sweep.to_json()["runs"]]:
                if d.is_dir():
                    clear_run(d)
        write_json(root / SWEEP_FILE, sweep.to_json())
        n = len(configs)
        for i, cfg in enumerate(configs, 1):
            name = Path(cfg.out).name
            state = status(Path(cfg.out), cfg.steps)
            action = {"new": "start", "done": "finished, skipped", "failed": "failed earlier, skipped",
                      "partial": "resume", "broken": "restart (it stopped before its first checkpoint)"}[state]
            log(f"sweep [{i}/{n}] {name}: {action}")
            if state in ("done", "failed"):
                if state == "failed":
                    failures.append((name, "failed earlier (see its events.jsonl)"))
                continue
            cfg = replace(cfg, resume=state == "partial", overwrite=state == "broken")
            try:
                train(cfg)
            except UserError as exc:
                log(f"sweep [{i}/{n}] {name}: failed: {exc}")
                failures.append((name, str(exc)))
    finally:
        lock.release()
    return failures
