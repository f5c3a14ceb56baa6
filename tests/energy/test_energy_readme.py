"""The energy README section's examples run as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Energy and carbon per request"


def test_readme_python_blocks_run():
    text = README.read_text()
    section = text[text.index(SECTION):]
    section = section[: section.find("\n## ", len(SECTION))]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "the energy README section lost its example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(README), "exec"), {})
    first, second = out.getvalue().splitlines()
    method, measured, energy, _, carbon, _ = first.split()
    assert (method, measured) == ("cpu-time-model", "False")
    assert float(energy) > 0 and float(carbon) > 0
    words = second.split()
    active, idle = float(words[1]), float(words[words.index("idle") + 1])
    assert abs(active + idle - float(energy)) < 1e-3 and active > 0  # the example's loop burned CPU
