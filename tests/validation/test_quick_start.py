"""Issue 21, item 8: the README's validation quick start, run from a fresh copy of the repository.

The copy holds what a clone holds (git's tracked files, plus new files not ignored, so uncommitted
work is tested too), no network and no corpus beside it: ``--model tiny`` must find the corpus the
package ships, and the cache must go to the user's cache directory, not into the checkout. The
README's commands run as written, with ``--steps`` cut to 3 to keep the test short.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_quick_start() -> list[list[str]]:
    """The ``osd-theory validate --model tiny`` block of README.md and the command after it, as argv lists."""
    text = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if "validate --model tiny" in b)
    return [shlex.split(line) for line in block.splitlines() if line.startswith("osd-theory ")]


def fresh_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.mark.slow
def test_readme_quick_start_runs_on_a_fresh_copy(tmp_path):
    commands = readme_quick_start()
    assert [c[:2] for c in commands] == [["osd-theory", "validate"], ["osd-theory", "report"]]
    repo = fresh_copy(tmp_path / "clone")
    assert not (repo.parent / "shared").exists()  # no corpus beside the copy: the package's own must do
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OSD_", "XDG_"))}
    env.update(PYTHONPATH=str(repo), HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    for argv in commands:
        if "--steps" in argv:
            argv[argv.index("--steps") + 1] = "3"
        proc = subprocess.run([sys.executable, "-m", "osd_theory.cli", *argv[1:]], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    run = repo / "runs" / "tiny"
    config = json.loads((run / "config.json").read_text())
    meta = json.loads((run / "meta.json").read_text())
    assert Path(config["data"]) == repo / "discrete" / "validation" / "tiny_corpus"
    assert Path(config["cache_dir"]) == home / ".cache" / "osd-theory" / "validation"
    assert any((home / ".cache" / "osd-theory" / "validation").iterdir()) and not (repo / ".cache").exists()
    assert meta["torch_threads"] >= 1 and config["threads"] == 0  # auto, and the number used is recorded
    assert proc.stdout.splitlines()[1].split()[0] == "tiny"  # the report's row of the run
