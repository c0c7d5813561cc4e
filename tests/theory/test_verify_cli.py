"""``osd-theory verify``: rows printed as claims finish, a statement column, a clean Ctrl-C.

An interrupted run must stop its worker processes and exit 130 with one line on stderr: no traceback
from any worker, and no "leaked semaphore" warning from multiprocessing's resource tracker.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def test_table_has_a_statement_column_and_an_evidence_line(capsys):
    from osd_theory.claims import TITLES
    from osd_theory.cli import main
    assert main(["verify", "--quick", "--claims", "C1", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()[:2]
    assert "statement" in header and row.startswith("C1") and TITLES["C1"].split()[0] in row
    assert "evidence:" in out and "1/1 claims gave their predicted verdict" in out


def test_heavy_and_quick_exclude_each_other(capsys):
    from osd_theory.cli import main
    assert main(["verify", "--quick", "--heavy", "--claims", "C1"]) == 2
    assert "--heavy and --quick" in capsys.readouterr().err


def test_ctrl_c_stops_the_workers_without_a_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "osd_theory.cli", "verify", "--quick", "--claims", "C4,C7", "--jobs", "2"],
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    time.sleep(8)                                # workers spawned and inside their claims
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)           # what a terminal's Ctrl-C does: the whole process group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "leaked" not in err, err
    assert "interrupted after" in err
