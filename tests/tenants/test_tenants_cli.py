"""`wattgate keys` and `wattgate audit` on a state directory; the gateway's refusal to serve open."""

from __future__ import annotations

import json
import time

import pytest

from gateway.auth import check_exposure
from tenants.settings import AuthSettings
from wattgate.cli import main
from wattgate.errors import BadRequest
from wattgate.settings import ServerSettings


def test_keys_create_list_rotate_revoke_and_audit(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WATTGATE_SERVER_STATE_DIR", str(tmp_path))
    assert main(["keys", "create", "--tenant", "team-a", "--rps", "5", "--models", "digits", "--budget-g", "3",
                 "--budget-period", "week"]) == 0
    key = capsys.readouterr().out.strip()
    key_id = key.split("_")[1]
    assert main(["keys", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["key_id"] == key_id and listed["models"] == ["digits"] and listed["budget_period"] == "week"
    assert main(["keys", "rotate", key_id, "--grace", "1h"]) == 0
    rotated = capsys.readouterr().out.strip()
    assert rotated != key
    assert main(["keys", "list"]) == 0
    assert "previous-secret-until=" in capsys.readouterr().out
    assert main(["keys", "show", key_id]) == 0
    (expires_at,) = json.loads(capsys.readouterr().out)["previous_secrets_expire_at"]
    assert 3590 < expires_at - time.time() <= 3600
    with pytest.raises(SystemExit):
        main(["keys", "rotate", key_id, "--grace", "soon"])  # argparse refuses it
    capsys.readouterr()
    assert main(["keys", "revoke", key_id]) == 0
    assert main(["keys", "show", key_id]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["active"] is False
    assert main(["audit", "--json"]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["action"] for e in entries] == ["keys create", "keys rotate", "keys revoke"]
    assert entries[1]["grace_s"] == 3600
    assert all(e["key_id"] == key_id and e["who"].startswith("cli:") for e in entries)
    for secret in (key.split("_", 2)[2], rotated.split("_", 2)[2]):
        assert secret not in (tmp_path / "audit.jsonl").read_text() + (tmp_path / "keys.json").read_text()
    assert main(["keys", "create", "--tenant", "x", "--budget-g", "-1"]) == 2  # refused, readable error


def test_serving_open_beyond_loopback_is_refused_unless_allowed():
    check_exposure(ServerSettings(host="127.0.0.1"), AuthSettings())
    with pytest.raises(BadRequest, match="allow_open"):
        check_exposure(ServerSettings(host="0.0.0.0"), AuthSettings())
    check_exposure(ServerSettings(host="0.0.0.0"), AuthSettings(allow_open=True))
    check_exposure(ServerSettings(host="0.0.0.0"), AuthSettings(mode="required"))
