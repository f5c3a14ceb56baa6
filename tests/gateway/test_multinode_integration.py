"""Live routing follows replayed intensity across a real multi-node Ray cluster on this machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_requests_land_on_the_node_of_the_chosen_pool_and_move_with_intensity(digits_repository):
    script = Path(__file__).with_name("multinode_check.py")
    proc = subprocess.run([sys.executable, str(script), str(digits_repository)], capture_output=True, text=True, timeout=420)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result; stderr tail:\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    for o in result["observed"]:
        assert o["pool"] == o["want"], o
        assert o["node_id"] == o["expected_node"], o
    assert {o["pool"] for o in result["observed"]} == {"de-x86", "fr-x86"}  # it moved, and moved back
    assert proc.returncode == 0
