"""Keys: issued once, stored salted and hashed, checked in constant time; rotate, revoke, persistence."""

from __future__ import annotations

import json
import math

import pytest

from tenants.keys import FileKeyBackend, KeyLimits, KeyStore, parse_bearer
from wattgate.errors import BadRequest, NotFound, Unauthorized


def store(tmp_path) -> KeyStore:
    return KeyStore(FileKeyBackend(tmp_path / "keys.json"), refresh_s=0)


def test_key_is_stored_only_as_a_salted_hash(tmp_path):
    keys = store(tmp_path)
    a, key_a = keys.create("team-a", KeyLimits(rps=5))
    b, key_b = keys.create("team-a", KeyLimits(rps=5))
    text = (tmp_path / "keys.json").read_text()
    for key in (key_a, key_b):
        assert key not in text and key.split("_", 2)[2] not in text
    assert a.salt != b.salt and a.hash != b.hash
    assert keys.verify(*parse_bearer(f"Bearer {key_a}")).tenant == "team-a"
    assert "salt" not in a.public() and "hash" not in a.public()


def test_keys_survive_a_new_store_and_revocation_reaches_it(tmp_path):
    keys = store(tmp_path)
    record, key = keys.create("team-b", KeyLimits(models=("digits",), budget_g=2.0, budget_period="day"))
    again = store(tmp_path)  # another process, or the gateway after a restart
    got = again.verify(*parse_bearer(f"Bearer {key}"))
    assert got.limits.models == ("digits",) and got.limits.budget_g == 2.0
    keys.revoke(record.key_id)
    with pytest.raises(Unauthorized, match="revoked"):
        again.verify(*parse_bearer(f"Bearer {key}"))


def test_rotate_replaces_the_secret(tmp_path):
    keys = store(tmp_path)
    record, old = keys.create("team-c", KeyLimits())
    _, new = keys.rotate(record.key_id)
    assert new.split("_")[1] == record.key_id
    with pytest.raises(Unauthorized):
        keys.verify(*parse_bearer(f"Bearer {old}"))
    assert keys.verify(*parse_bearer(f"Bearer {new}")).key_id == record.key_id


def test_rotate_with_a_grace_period_keeps_the_old_secret_until_it_ends(tmp_path):
    now = [1000.0]
    keys = KeyStore(FileKeyBackend(tmp_path / "keys.json"), refresh_s=0, clock=lambda: now[0])
    record, first = keys.create("team-g", KeyLimits())
    rotated, second = keys.rotate(record.key_id, grace_s=3600)
    assert rotated.public()["previous_secrets_expire_at"] == [4600.0] and rotated.rotated_at == 1000.0
    for key in (first, second):  # the new one at once, the old one still
        assert keys.verify(*parse_bearer(f"Bearer {key}")).key_id == record.key_id
    # Another process (or a restart) reads the old secret's expiry from the store.
    other = KeyStore(FileKeyBackend(tmp_path / "keys.json"), refresh_s=0, clock=lambda: now[0])
    assert other.verify(*parse_bearer(f"Bearer {first}")).tenant == "team-g"
    assert first.split("_", 2)[2] not in (tmp_path / "keys.json").read_text()
    now[0] = 4600.0  # the grace period is over
    with pytest.raises(Unauthorized, match="grace period is over"):
        keys.verify(*parse_bearer(f"Bearer {first}"))
    assert keys.verify(*parse_bearer(f"Bearer {second}")).key_id == record.key_id
    # Rotating again drops expired secrets and keeps the one in its grace; revoking ends every secret.
    now[0] = 5000.0
    again, third = keys.rotate(record.key_id, grace_s=60)
    assert again.public()["previous_secrets_expire_at"] == [5060.0]
    assert keys.verify(*parse_bearer(f"Bearer {second}")) and keys.verify(*parse_bearer(f"Bearer {third}"))
    keys.revoke(record.key_id)
    for key in (second, third):
        with pytest.raises(Unauthorized, match="revoked"):
            keys.verify(*parse_bearer(f"Bearer {key}"))


def test_rotation_grace_defaults_from_settings_and_bad_values_are_refused(tmp_path):
    now = [0.0]
    keys = KeyStore(FileKeyBackend(tmp_path / "keys.json"), refresh_s=0, clock=lambda: now[0], rotation_grace_s=10)
    record, old = keys.create("team-h", KeyLimits())
    keys.rotate(record.key_id)
    now[0] = 9.0
    assert keys.verify(*parse_bearer(f"Bearer {old}"))
    now[0] = 10.0
    with pytest.raises(Unauthorized):
        keys.verify(*parse_bearer(f"Bearer {old}"))
    for bad in (-1, math.nan, math.inf, "1h", True, 31 * 86400):
        with pytest.raises(BadRequest, match="grace_s"):
            keys.rotate(record.key_id, bad)


@pytest.mark.integration
def test_rotation_grace_in_the_redis_store():
    from tenants.keys import RedisKeyBackend
    from tests.redis_server import LocalRedis

    now = [0.0]
    with LocalRedis() as redis:
        one = KeyStore(RedisKeyBackend(redis.url, "g"), refresh_s=0, clock=lambda: now[0])
        two = KeyStore(RedisKeyBackend(redis.url, "g"), refresh_s=0, clock=lambda: now[0])  # another replica
        record, old = one.create("team-i", KeyLimits())
        _, new = one.rotate(record.key_id, grace_s=30)
        assert two.show(record.key_id).public()["previous_secrets_expire_at"] == [30.0]
        assert two.verify(*parse_bearer(f"Bearer {old}")) and two.verify(*parse_bearer(f"Bearer {new}"))
        now[0] = 30.0
        with pytest.raises(Unauthorized):
            two.verify(*parse_bearer(f"Bearer {old}"))
        assert two.verify(*parse_bearer(f"Bearer {new}")).tenant == "team-i"


@pytest.mark.parametrize("value", ["", "Bearer ", "Bearer " + "x" * 300, "Bearer wg_é", "Basic abc", "Bearer wg_zz_y",
                                   "Bearer wg_0123456789ab_" + "A" * 42])
def test_malformed_bearer_values_are_unauthorized_without_echo(value):
    with pytest.raises(Unauthorized) as info:
        parse_bearer(value)
    assert value.partition(" ")[2] not in info.value.message or not value.partition(" ")[2]


def test_unknown_id_and_wrong_secret_read_the_same(tmp_path):
    keys = store(tmp_path)
    record, key = keys.create("team-d", KeyLimits())
    wrong = f"wg_{record.key_id}_" + "A" * 43
    other = "wg_000000000000_" + "A" * 43
    msgs = set()
    for k in (wrong, other):
        with pytest.raises(Unauthorized) as info:
            keys.verify(*parse_bearer(f"Bearer {k}"))
        msgs.add(info.value.message)
    assert msgs == {"invalid API key"}


@pytest.mark.parametrize("bad", [{"budget_g": -1}, {"budget_g": math.nan}, {"budget_g": math.inf}, {"rps": 0},
                                 {"burst": 1.5}, {"budget_period": "year"}, {"models": []}, {"colour": "red"}])
def test_bad_limits_are_refused_and_nothing_is_written(tmp_path, bad):
    keys = store(tmp_path)
    record, _ = keys.create("team-e", KeyLimits(budget_g=1.0))
    before = (tmp_path / "keys.json").read_text()
    with pytest.raises(BadRequest):
        keys.update_limits(record.key_id, bad)
    assert (tmp_path / "keys.json").read_text() == before
    assert json.loads(before)["keys"][record.key_id]["limits"]["budget_g"] == 1.0


def test_update_limits_keeps_other_fields(tmp_path):
    keys = store(tmp_path)
    record, _ = keys.create("team-f", KeyLimits(rps=3, models=("digits",)))
    changed = keys.update_limits(record.key_id, {"budget_g": 5})
    assert changed.limits.rps == 3 and changed.limits.models == ("digits",) and changed.limits.budget_g == 5
    with pytest.raises(NotFound):
        keys.update_limits("000000000000", {"budget_g": 1})


def test_bad_tenant_names_are_refused(tmp_path):
    with pytest.raises(BadRequest):
        store(tmp_path).create("../etc", KeyLimits())
