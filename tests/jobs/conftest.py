"""Fixtures of the jobs room: a data plane on the digits model with replayed DE intensity and a settable clock."""

from __future__ import annotations

import pytest

from jobs_fakes import DIRTY, TRACES

@pytest.fixture
def replay_sections(tmp_path):
    """Settings sections: one local pool in DE (no topology), DE replayed from DIRTY with the clock held."""
    return {
        "routing": {"topology_file": str(tmp_path / "no-topology.yaml")},
        "server": {"region": "DE", "state_dir": str(tmp_path / "state")},
        "intensity": {"provider": "replay", "fallback": ["static"],
                      "replay": {"files": {"DE": str(TRACES / "DE_2020H1.csv")}, "start": DIRTY.isoformat(), "speed": 0}},
        "jobs": {"poll_interval_s": 0.05},
    }
