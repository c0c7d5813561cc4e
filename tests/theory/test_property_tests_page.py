"""docs/property-tests.md: the user's pytest file on that page runs, and passes, as written.

The file is extracted from the page (the ``python title="test_myrule.py"`` block) and run by pytest
in a fresh interpreter, so the page cannot drift from the public ``osd_theory.testing`` API.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "property-tests.md"


def page_test_file() -> str:
    m = re.search(r'```python title="test_myrule.py"\n(.*?)```', PAGE.read_text(), flags=re.S)
    assert m, "docs/property-tests.md has no ```python title=\"test_myrule.py\" block"
    return m.group(1)


def test_the_pages_test_file_runs_and_passes(tmp_path):
    (tmp_path / "test_myrule.py").write_text(page_test_file())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0", "test_myrule.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 passed" in proc.stdout, proc.stdout[-2000:]


def test_a_failing_rule_shrinks_to_a_blow_up_with_its_trajectory():
    """check_rule inside @given on the page's cubic rule: hypothesis finds and shrinks the failure, and the
    error it re-raises is a RuleBlewUp with the partial trajectory."""
    import pytest
    from hypothesis import given

    from osd_theory.testing import RuleBlewUp, check_rule, rule_cases, rule_settings

    def cubic(t, P, G):
        return 3.0 * P @ (P.mT @ P)

    @rule_settings(max_examples=5, database=None)
    @given(rule_cases(cubic))
    def prop(case):
        # ‖P‖ past 100 (from √r) is already a blow-up; stopping there halves the cost of each of hypothesis'
        # ~100 shrink attempts (this test was 90 s of CI with the default 1e4)
        check_rule(case, blowup_norm=1e2)

    with pytest.raises(RuleBlewUp) as info:
        prop()
    err = info.value
    assert err.trajectory is not None and len(err.trajectory) > 0
    assert err.t_reached < err.case.t_end
