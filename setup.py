"""Build hook: write the source commit into the package (discrete/validation/_build_commit.txt).

A run from an installed package (no git checkout) then still records which commit it ran
(discrete/validation/provenance.py). Everything else is configured in pyproject.toml.
"""
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

COMMIT_FILE = Path("discrete") / "validation" / "_build_commit.txt"


def _head() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _write(root: Path) -> None:
    # from a checkout: HEAD; from an sdist (no .git): the file the sdist already carries
    commit, carried = _head(), Path(__file__).parent / COMMIT_FILE
    if not commit and carried.is_file():
        commit = carried.read_text().strip()
    if commit:
        (root / COMMIT_FILE).parent.mkdir(parents=True, exist_ok=True)
        (root / COMMIT_FILE).write_text(commit + "\n")


class BuildPy(build_py):
    def run(self):
        super().run()
        _write(Path(self.build_lib))


class Sdist(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        _write(Path(base_dir))


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
