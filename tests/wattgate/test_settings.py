"""Settings: YAML under environment variables, with readable validation errors."""

from __future__ import annotations

import pytest

from wattgate.errors import BadRequest
from wattgate.settings import load_settings


def test_yaml_then_env_override(tmp_path, monkeypatch):
    cfg = tmp_path / "w.yaml"
    cfg.write_text("server:\n  port: 9100\n  host: 127.0.0.1\nmodels:\n  per_model:\n    digits:\n      max_batch_size: 64\ncache:\n  url: redis://127.0.0.1:1/0\n")
    s = load_settings(cfg)
    assert s.server.port == 9100
    assert s.models.serving("digits").max_batch_size == 64
    assert s.models.serving("digits").batch_wait_timeout_s == s.models.defaults.batch_wait_timeout_s
    assert s.models.serving("other").max_batch_size == 32
    monkeypatch.setenv("WATTGATE_SERVER_PORT", "9200")
    monkeypatch.setenv("WATTGATE_CACHE_URL", "redis://127.0.0.1:6379/0")
    s = load_settings(cfg)
    assert s.server.port == 9200 and s.cache.url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    "text,msg",
    [
        ("server:\n  port: 0\n", "server.port"),
        ("server:\n  proxy: nginx\n", "server.proxy"),
        ("bogus: 1\n", "bogus"),
        ("- a list\n", "mapping"),
        ("server: [\n", "not valid YAML"),
    ],
)
def test_invalid_settings_are_explained(tmp_path, text, msg):
    cfg = tmp_path / "w.yaml"
    cfg.write_text(text)
    with pytest.raises(BadRequest, match=msg):
        load_settings(cfg)


def test_missing_config_file(tmp_path):
    with pytest.raises(BadRequest, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
