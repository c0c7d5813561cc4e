"""One place per setting: the checks behind ``--group-option`` and ``--proj-option``.

The rule (docs/results/validation/README.md, "Settings: one place each"):

* A setting that has a flag is given with that flag only. ``--group-option rank=4`` (the projected
  group's ``rank``, which ``--rank`` sets) is an error naming both, as is ``--proj-option alpha=2``
  where ``--alpha`` fills the rule's ``alpha`` (OSD), or ``--proj-option init=...`` next to
  ``--group-option proj_init=...``. So nothing overrides anything, and ``config.json`` (which holds
  the flags and the two option dicts) records what the run used.
* An option nothing reads is an error: group options under ``adamw`` (torch.optim.AdamW has no
  projected group), ``--proj-option rank`` / ``side`` (the group's rank and ``proj_type`` decide
  them), a rule option the optimizers' discrete face does not read (``tau``: the optimizers refresh
  every ``--update-proj-gap`` steps), an option the named rule does not have, and ``--alpha`` /
  ``--pca-lambda`` off OSD (checked in :mod:`resolve`, where their OSD defaults are filled).

Each check returns the one-line message or None, as :data:`resolve.CROSS_CHECKS` expects.
"""
from __future__ import annotations

import dataclasses

from discrete.validation.config import RunConfig, flag_of

# projected-group key -> the RunConfig field (flag) that sets it; the constructor's own keywords too
GROUP_KEY_FLAGS = {
    "rank": "rank", "update_proj_gap": "update_proj_gap", "scale": "scale", "projection": "projection",
    "proj_options": "proj_options", "alpha": "alpha", "pca_lambda": "pca_lambda", "seed": "seed",
    "lr": "lr", "betas": "betas", "eps": "eps", "weight_decay": "weight_decay", "nonfinite": "nonfinite",
    "eps_placement": "eps_placement",
}

# rule options the optimizers never pass on or never read, and where the setting lives instead
NOT_RULE_OPTIONS = {
    "rank": "the rank is --rank",
    "side": "the side is the group's proj_type (--group-option proj_type=left|right|std|reverse_std)",
    "tau": "the optimizers refresh every --update-proj-gap steps; tau is the simulator's continuous-time period, "
           "which their discrete face does not read",
}


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


# the optimizer's constructor keywords, which every group takes from the flags
CONSTRUCTOR_KEYS = ("lr", "betas", "eps", "weight_decay", "nonfinite", "eps_placement")


def group_options_have_flags(cfg: RunConfig, world: int = 1) -> str | None:
    """``--group-option K=V`` for a K that a flag sets in this run's projected group: the error names both."""
    from discrete.validation.optim import group_keys_of

    flagged = group_keys_of(dataclasses.replace(cfg, group_options={}))
    if flagged is None:
        return None
    for key, value in (cfg.group_options or {}).items():
        name = GROUP_KEY_FLAGS.get(key)
        if name is not None and (key in flagged or key in CONSTRUCTOR_KEYS or key in ("projection", "proj_options")):
            now = getattr(cfg, name)
            shown = f" (now {_show(now)})" if now not in (None, {}, []) else ""
            return (f"--group-option {key}={value} and {flag_of(name)}{shown} set the same thing, the projected "
                    f"group's {key}; give it once, as {flag_of(name)}")
    return None


def group_options_need_group(cfg: RunConfig, world: int = 1) -> str | None:
    from discrete.validation.optim import projects

    if cfg.group_options and not projects(cfg.optimizer):
        keys = ", ".join(sorted(cfg.group_options))
        return (f"--group-option {keys}: --optimizer {cfg.optimizer} has no projected param group, so nothing "
                "would read it (group options apply to galore, osd, rso)")
    return None


def _alias_keys() -> dict[str, str]:
    """Rule field -> the group key that also sets it (discrete.projection.RULE_FIELDS, inverted)."""
    from discrete.projection import RULE_FIELDS

    return {field: key for key, field in RULE_FIELDS.items()}


def _registered_rule(name: str | None):
    from osd_theory.projections import PROJECTIONS

    return PROJECTIONS.get(name) if name and ":" not in name and name in PROJECTIONS else None


def proj_options_read(cfg: RunConfig, world: int = 1) -> str | None:
    """Each ``--proj-option`` is read by the rule and set nowhere else."""
    from discrete.validation.optim import group_keys_of

    if not cfg.proj_options:
        return None
    group = group_keys_of(cfg)  # the projected group's keys without proj_options (None where not projected)
    aliases = _alias_keys()
    cls = _registered_rule(cfg.projection)
    fields = {f.name for f in dataclasses.fields(cls) if f.init} if cls is not None else None
    for key, value in cfg.proj_options.items():
        if key in NOT_RULE_OPTIONS:
            return f"--proj-option {key}={value}: not read by the optimizers; {NOT_RULE_OPTIONS[key]}"
        alias = aliases.get(key)
        if group is not None and alias is not None and group.get(alias) is not None:
            name = GROUP_KEY_FLAGS.get(alias)
            other = f"{flag_of(name)} {_show(getattr(cfg, name))}" if name else \
                f"--group-option {alias}={group[alias]}"
            return (f"--proj-option {key}={value} and {other} set the same thing, the rule's {key}; give it once, "
                    f"as {other.split()[0]}")
        if fields is not None and key not in fields:
            valid = sorted(fields - set(NOT_RULE_OPTIONS))
            return f"--proj-option {key}: projection {cfg.projection!r} has no option {key!r}; its options are {valid}"
    return None


CHECKS = (group_options_need_group, group_options_have_flags, proj_options_read)
