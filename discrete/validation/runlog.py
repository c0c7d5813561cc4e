"""The run directory's files: resolved config, provenance (git hash, command, versions), the JSONL
log of the run, and ``events.jsonl``, the run's history (start, each resume with what changed,
interruptions, failures, repairs of the log).

A log line that does not parse is a record cut by a crash mid-write (or damage): readers skip it
(:func:`read_log_checked` says how many), a resume rewrites the log without it and records that.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

import torch

from discrete.validation.provenance import command, git_state  # noqa: F401  (git_state: re-exported)
from osd_theory.errors import UserError

LOG_NAME = "log.jsonl"
EVENTS_NAME = "events.jsonl"


def _write_error(path: Path, exc: OSError) -> UserError:
    return UserError(f"cannot write {path}: {exc.strerror or exc}")


def write_json(path: Path, obj) -> None:
    """Atomic JSON write; a failure (disk full, read-only) removes the temporary file (UserError)."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, exc) from None


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def write_provenance(run_dir: Path, config: dict | None, device: torch.device, world: int,
                     extra: dict | None = None) -> None:
    if config is not None:
        write_json(run_dir / "config.json", config)
    from discrete.validation.provenance import record

    meta = {**record(device), "argv": sys.argv, "world_size": world, **(extra or {})}
    write_json(run_dir / "meta.json", meta)


def append_event(run_dir: Path, event: str, **fields) -> None:
    """One line of the run's history in ``events.jsonl`` (what happened, when, by which command)."""
    rec = {"event": event, "time": datetime.datetime.now().isoformat(timespec="seconds"), "command": command(), **fields}
    path = Path(run_dir) / EVENTS_NAME
    try:
        with open(path, "a") as f:
            f.write(json.dumps(rec, default=str) + "\n")
    except OSError as exc:
        raise _write_error(path, exc) from None


def _parse_lines(text: str) -> tuple[list[dict], int]:
    records, bad = [], 0
    for ln in text.splitlines():
        if not ln.strip():
            continue
        try:
            rec = json.loads(ln)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad += 1
    return records, bad


class JsonlLog:
    """One JSON object per line, flushed per record; on resume, records after the checkpoint are cut.

    ``dropped`` counts unparsable lines removed on resume (a crash mid-write leaves a partial one).
    """

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None = None):
        self.path = Path(run_dir) / LOG_NAME
        self.enabled = enabled
        self.dropped = 0
        if not enabled:
            return
        try:
            if resume_step is not None and self.path.is_file():
                text, bad = _read_lines(self.path)
                records, self.dropped = _parse_lines(text)
                self.dropped += bad
                keep = [r for r in records if r.get("step", 0) <= resume_step]
                tmp = self.path.with_suffix(f".tmp{os.getpid()}")
                try:
                    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
                    os.replace(tmp, self.path)
                finally:
                    tmp.unlink(missing_ok=True)
            elif resume_step is None:
                self.path.write_text("")
        except OSError as exc:
            raise _write_error(self.path, exc) from None

    def write(self, record: dict) -> None:
        if self.enabled:
            try:
                with open(self.path, "a") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as exc:
                raise _write_error(self.path, exc) from None


def _read_lines(path: Path) -> tuple[str, int]:
    """The UTF-8 lines of a file joined, and how many lines were not UTF-8 (damage: skipped, counted)."""
    good, bad = [], 0
    for line in Path(path).read_bytes().split(b"\n"):
        try:
            good.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            bad += 1
    return "\n".join(good), bad


def read_log_checked(run_dir: str | Path) -> tuple[list[dict], int]:
    """(records, number of unparsable lines skipped: cut, damaged or not UTF-8) of a run's ``log.jsonl``."""
    path = Path(run_dir) / LOG_NAME
    try:
        text, bad = _read_lines(path)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    records, unparsable = _parse_lines(text)
    return records, bad + unparsable


def read_log(run_dir: str | Path) -> list[dict]:
    return read_log_checked(run_dir)[0]


def read_meta(run_dir: Path) -> dict:
    """A run's ``meta.json`` (UserError when missing or unreadable: a resume cannot tell whose files it holds)."""
    path = Path(run_dir) / "meta.json"
    if not path.is_file():
        raise UserError(f"--resume: {path} is missing, so the run's identity cannot be checked; restore it, or "
                        "start again with --overwrite")
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise UserError(f"--resume: {path} is not a JSON object")
    return meta


def record_start(run_dir: Path, cfg, plan, start: int, dropped: int, device, world: int, data_key: str, log,
                 run_id: str | None = None) -> None:
    """A fresh run (``plan`` None) writes its config and provenance; a resume records what changed.

    The resume's allowed changes (``plan.changes``, ``plan.notes``, see resume.py) go to
    ``config.json`` (so the run is labelled by what it is now) and, with the old values, to
    ``events.jsonl``, as does the repair of a log cut mid-write.
    """
    from discrete.validation.identity import file_sha256, start_record

    if plan is None:
        write_json(run_dir / "config.json", cfg.to_json())
        write_provenance(run_dir, None, device, world,
                         {"data_key": data_key, **start_record(run_dir, cfg.projection, run_id)})
        append_event(run_dir, "start", run_id=run_id)
        return
    notes = list(plan.notes)
    if dropped:
        notes.append(f"dropped {dropped} unparsable line(s) of {LOG_NAME} (a record cut by a crash mid-write)")
    if plan.changes:
        write_json(run_dir / "config.json", cfg.to_json())
        if run_id is not None:  # the run's own change: the recorded hash follows it
            meta = read_meta(run_dir)
            write_json(run_dir / "meta.json", {**meta, "config_sha256": file_sha256(run_dir / "config.json")})
    append_event(run_dir, "resume", step=start, changes={k: list(v) for k, v in plan.changes.items()}, notes=notes)
    for note in notes:
        log(f"resume: {note}")
