"""Regenerate the notebooks: sync each .ipynb with its jupytext source, then execute it.

    python scripts/docs/notebooks.py            # all notebooks, full sizes, outputs saved
    python scripts/docs/notebooks.py --smoke    # tiny sizes (SMOKE=1), as the tests run them
    python scripts/docs/notebooks.py 02 04      # only notebooks whose name contains 02 or 04

The saved outputs are what the docs pages show (scripts/docs/hooks.py renders them).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"


def main(argv: list[str]) -> int:
    import jupytext
    import nbclient
    import nbformat

    smoke = "--smoke" in argv
    only = [a for a in argv if not a.startswith("--")]
    env_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.environ["PYTHONPATH"] = env_path
    os.environ.pop("MPLBACKEND", None)   # the kernel's inline backend, so figures are saved as outputs
    if smoke:
        os.environ["SMOKE"] = "1"
    else:
        for var in ("SMOKE", "FAST", "CI"):
            os.environ.pop(var, None)
    for src in sorted(NB_DIR.glob("*.py")):
        if src.name.startswith("_") or (only and not any(o in src.stem for o in only)):
            continue
        subprocess.run([sys.executable, "-m", "jupytext", "--sync", "--quiet", str(src)], check=True)
        ipynb = src.with_suffix(".ipynb")
        nb = jupytext.read(ipynb)
        t0 = time.perf_counter()
        nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3",
                                resources={"metadata": {"path": str(NB_DIR)}}).execute()
        jupytext.write(nb, ipynb)
        subprocess.run([sys.executable, "-m", "jupytext", "--sync", "--quiet", str(src)], check=True)
        print(f"{ipynb.relative_to(ROOT)}: executed in {time.perf_counter() - t0:.1f} s{' (SMOKE)' if smoke else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
