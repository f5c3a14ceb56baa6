"""The energy README section's examples run as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "energy" / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the energy README section lost its example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(README), "exec"), {})
    method, measured, energy, _, carbon, _ = out.getvalue().split()
    assert (method, measured) == ("cpu-time-model", "False")
    assert float(energy) > 0 and float(carbon) > 0
