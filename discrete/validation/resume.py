"""Resume rules: what a ``--resume`` may change, what it must keep, and the record of each change.

The run's ``config.json`` is the reference. Each setting's role (:mod:`config`) decides:

* ``defines`` and ``seed`` (model, optimizer, rank, lr and its schedule, batch, sequence length,
  the optimizer's knobs, tokenizer and data sizes, seed): must be unchanged. A resume that changes
  any of them is refused, and the message lists every difference.
* ``length`` (steps): may grow, never shrink. The lr schedule keeps the run's length
  (``schedule_steps``): warm-up and cosine end where they ended, and the extra steps run at the
  final lr, ``min_lr_frac`` x the peak. So the first ``schedule_steps`` steps are those of the
  original run, bit for bit.
* ``data`` (corpus paths): may change if the corpus is the same; the trainer compares the data
  fingerprint stored in the checkpoint.
* ``safe`` (logging, eval and checkpoint periods, device, compile, micro-batch, the non-finite
  policy, cache dir): may change; the change is noted.

An allowed change is written to ``config.json`` (so ``report`` labels the run by what it is now)
and, with the old and new values and the notes, to ``events.jsonl``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from discrete.validation.config import DATA, DEFINES, FIELDS, LENGTH, SAFE, SEED, RunConfig, flag_of, from_json
from discrete.validation.runlog import read_json
from osd_theory.errors import UserError

# why a safe change is safe, or what it costs (shown with the change)
WHY = {
    "micro_batch_size": "gradients are summed in another order: not bit-exact with an uninterrupted run",
    "nonfinite": "the same updates while gradients are finite",
    "compile": "the same model; compiled kernels may round differently",
    "device": "the same model on another device; kernels may round differently",
}


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


@dataclass
class ResumePlan:
    saved: RunConfig
    changes: dict[str, tuple] = field(default_factory=dict)  # field -> (old, new)
    notes: list[str] = field(default_factory=list)


def load_saved(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"--resume: {run_dir} holds no run to resume (no config.json); start it without --resume")
    return from_json(read_json(path))


def schedule_note(cfg: RunConfig, old_steps: int) -> str:
    s = cfg.schedule_steps
    return (f"steps {old_steps} -> {cfg.steps}: the lr schedule keeps its {s} steps (warm-up, then cosine to "
            f"{cfg.min_lr_frac:g} x lr at step {s}); steps {max(s, old_steps) + 1}..{cfg.steps} run at "
            f"{cfg.min_lr_frac:g} x the peak lr")


def plan_resume(run_dir: Path, cfg: RunConfig) -> ResumePlan:
    """Compare a resolved ``cfg`` with the run's saved config: refuse, or list the allowed changes.

    A ``cfg.schedule_steps`` of None takes the run's (older configs: its steps).
    """
    saved = load_saved(run_dir)
    saved.schedule_steps = saved.schedule_steps or saved.steps
    if cfg.schedule_steps is None:
        cfg.schedule_steps = saved.schedule_steps
    plan = ResumePlan(saved)
    refused = []
    for name, f in FIELDS.items():
        role, old, new = f.metadata["role"], getattr(saved, name), getattr(cfg, name)
        if old == new or role not in (DEFINES, SEED, LENGTH, DATA, SAFE):
            continue
        if role in (DEFINES, SEED) or (role == LENGTH and new < old):
            refused.append(f"{flag_of(name)} {_show(old)} -> {_show(new)}")
            continue
        plan.changes[name] = (old, new)
        if role == LENGTH:
            plan.notes.append(schedule_note(cfg, old))
        elif role == DATA:
            plan.notes.append(f"{flag_of(name)} {_show(old)} -> {_show(new)}: allowed because the corpus content "
                              "is the same (checked against the checkpoint)")
        else:
            why = f" ({WHY[name]})" if name in WHY else ""
            plan.notes.append(f"{flag_of(name)} {_show(old)} -> {_show(new)}{why}")
    if refused:
        shrink = " (--steps may only grow)" if any(r.startswith("--steps") for r in refused) else ""
        raise UserError(f"--resume: these settings differ from the run in {run_dir}: {'; '.join(refused)}{shrink}; "
                        "they define the run, so drop these flags, or start a new run (another --out, or --overwrite)")
    return plan
