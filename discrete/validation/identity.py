"""A run knows its own files: run id and content hashes recorded at the start, checked on resume.

At the start a run draws a ``run_id`` (random, 32 hex digits) and writes it to ``meta.json`` with
``config_sha256`` (SHA-256 of ``config.json`` as written) and, for a user projection rule
``path/to/file.py:function``, ``rule_sha256`` (SHA-256 of the file). Every checkpoint carries the
``run_id``. A resume (:func:`check_run_files`, before the rule file is imported) refuses:

* a checkpoint whose ``run_id`` is not the run's (copied from another run, e.g. one with another
  ``--lr`` or ``--seed``), or a checkpoint without one where the run has one;
* a ``config.json`` whose bytes are not those recorded (edited by hand; a resume's own allowed
  changes rewrite it and update the hash);
* a rule file whose bytes changed since the start;
* a run whose ``log.jsonl`` is gone (its records up to the checkpoint would be lost silently).

Runs written before run ids (no ``run_id`` in ``meta.json``) resume with a note.
"""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from osd_theory.errors import UserError

CONFIG_NAME, META_NAME, LOG_NAME = "config.json", "meta.json", "log.jsonl"


def new_run_id() -> str:
    return uuid.uuid4().hex


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def rule_file(projection: str | None) -> Path | None:
    """The file of a user rule ``path/to/file.py:function`` (None for a registered name or no rule)."""
    if not projection or ":" not in projection:
        return None
    return Path(projection.rpartition(":")[0])


def start_record(run_dir: Path, projection: str | None, run_id: str) -> dict:
    """The identity fields of a fresh run's meta.json (config.json already written)."""
    rec = {"run_id": run_id, "config_sha256": file_sha256(Path(run_dir) / CONFIG_NAME)}
    path = rule_file(projection)
    if path is not None:
        rec["rule_sha256"] = file_sha256(path)
    return rec


def check_run_files(run_dir: Path, cfg, ck: dict, meta: dict) -> str | None:
    """Refuse (UserError) files that are not the run's own; returns the run id (None: a run without one)."""
    run_dir = Path(run_dir)
    how = "restore the run's own file, or start again with --overwrite"
    if not (run_dir / LOG_NAME).is_file():
        raise UserError(f"--resume: {run_dir / LOG_NAME} is missing (the run's records up to step {ck['step']} "
                        f"would be lost); {how}")
    run_id = meta.get("run_id")
    if run_id is None:
        return None  # written before run ids: nothing to compare (the checkpoint's checksum still holds)
    if ck.get("extra", {}).get("run_id") != run_id:
        whose = ck.get("extra", {}).get("run_id")
        what = f"run {whose}" if whose else "a run without a run id"
        raise UserError(f"--resume: {run_dir / 'checkpoint.pt'} belongs to {what}, not to this run ({run_id}); {how}")
    if meta.get("config_sha256") != file_sha256(run_dir / CONFIG_NAME):
        raise UserError(f"--resume: {run_dir / CONFIG_NAME} was changed since the run wrote it (its SHA-256 differs "
                        f"from the one in {META_NAME}); {how}")
    path = rule_file(cfg.projection)
    if path is not None and meta.get("rule_sha256") not in (None, file_sha256(path)):
        raise UserError(f"--resume: the rule file {path} was changed since the run started (its SHA-256 differs from "
                        f"the one in {META_NAME}); restore it, or start a new run")
    return run_id


def require_named_rule(saved_projection: str | None, given: dict) -> None:
    """A resume imports a user rule file only if this command line names it (``--projection`` again)."""
    if rule_file(saved_projection) is not None and "projection" not in given:
        raise UserError(f"--resume: the run trains with the user rule {saved_projection}, which is imported (run as "
                        f"Python); name it on this command line too: --projection {saved_projection}")
