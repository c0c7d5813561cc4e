"""Plant the mutant named by ``OSD_MUTANT`` when its module is first imported (see mutants.py).

Put this folder first on ``PYTHONPATH``: Python imports ``sitecustomize`` at start-up in every
interpreter — the verify workers it spawns, pytest, the subprocesses and notebook kernels the
tests start — so the same bug is planted everywhere, and only in processes run for the check.
"""
import importlib.abc
import os
import sys

_NAME = os.environ.get("OSD_MUTANT")

if _NAME and _NAME != "none":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from mutants import BY_NAME, apply  # noqa: E402

    _MUTANT = BY_NAME[_NAME]

    class _PlantOnImport(importlib.abc.MetaPathFinder):
        """Finds the target module with the other finders, then patches it right after it executes."""

        def find_spec(self, name, path, target=None):
            if name != _MUTANT.module:
                return None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
            else:
                return None
            original = spec.loader.exec_module

            def exec_module(module, _original=original):
                _original(module)
                apply(_MUTANT, module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _PlantOnImport())
