"""The README's quality-guard settings load as written, and bad values fail with a clear error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wattgate.errors import BadRequest
from wattgate.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_readme_quality_guard_example_loads(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Live quality guard"):]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    (tmp_path / "w.yaml").write_text(block)
    q = load_settings(tmp_path / "w.yaml").quality_guard
    assert (q.enabled, q.sample_rate, q.budget_j_per_hour, q.action, q.min_rows) == (True, 0.01, 500, "exclude", 20)
    assert load_settings(ROOT / "wattgate.yaml").quality_guard.enabled is False


@pytest.mark.parametrize("bad, match", [({"sample_rate": 1.5}, "sample_rate"), ({"sample_rate": -0.1}, "sample_rate"),
                                        ({"min_rows": 50, "window_rows": 10}, "min_rows"),
                                        ({"action": "shrug"}, "action")])
def test_bad_guard_settings_are_clear_errors(bad, match):
    with pytest.raises(BadRequest, match=match):
        load_settings(None, quality_guard=bad)
