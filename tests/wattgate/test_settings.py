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


def test_serving_settings_import_neither_the_optimizers_nor_the_load_tests():
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
    code = "import json, sys, wattgate.settings; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, check=True)
    imported = set(json.loads(proc.stdout))
    assert "wattgate" in imported and "cache" in imported  # it did import the serving settings
    assert not imported & {"optimizers", "loadtests", "bench"}


COMMAND_SECTIONS = "optimizers:\n  torch_threads: {threads}\n  digits:\n    alpha: {alpha}\nloadtest:\n  users: {users}\n"


def test_serving_skips_the_other_commands_sections_unvalidated(tmp_path):
    cfg = tmp_path / "w.yaml"
    # alpha 5 and users 0 are invalid for their commands; serving must not even look at them.
    cfg.write_text("server:\n  port: 9100\n" + COMMAND_SECTIONS.format(threads=2, alpha=5, users=0))
    s = load_settings(cfg)
    assert s.server.port == 9100
    assert not hasattr(s, "optimizers") and not hasattr(s, "loadtest")


def test_fingerprint_ignores_the_other_commands_sections(tmp_path, monkeypatch):
    def fingerprint(threads: int, users: int, port: int = 9100) -> str:
        cfg = tmp_path / f"w-{threads}-{users}-{port}.yaml"
        cfg.write_text(f"server:\n  port: {port}\n" + COMMAND_SECTIONS.format(threads=threads, alpha=0.5, users=users))
        return load_settings(cfg).fingerprint()

    base = fingerprint(threads=1, users=16)
    assert fingerprint(threads=4, users=16) == base
    assert fingerprint(threads=1, users=3) == base
    monkeypatch.setenv("WATTGATE_OPTIMIZERS_TORCH_THREADS", "8")
    assert fingerprint(threads=1, users=16) == base
    assert fingerprint(threads=1, users=16, port=9101) != base  # a serving change still shows


def test_a_commands_section_reads_only_that_section_under_its_env_overrides(tmp_path, monkeypatch):
    from optimizers.settings import OptimizersSettings
    from wattgate.config_file import load_section

    cfg = tmp_path / "w.yaml"
    cfg.write_text("server:\n  port: 0\nbogus: 1\n" + COMMAND_SECTIONS.format(threads=2, alpha=0.5, users=4))
    s = load_section(cfg, "optimizers", OptimizersSettings)  # server.port 0 and bogus are serving's to refuse
    assert (s.torch_threads, s.digits.alpha, s.digits.seeds) == (2, 0.5, 5)
    monkeypatch.setenv("WATTGATE_OPTIMIZERS_TORCH_THREADS", "3")
    monkeypatch.setenv("WATTGATE_OPTIMIZERS_DIGITS", '{"epochs": 9}')
    s = load_section(cfg, "optimizers", OptimizersSettings)
    assert (s.torch_threads, s.digits.alpha, s.digits.epochs) == (3, 0.5, 9)
    assert load_section(None, "optimizers", OptimizersSettings).torch_threads == 3
    monkeypatch.delenv("WATTGATE_OPTIMIZERS_TORCH_THREADS")
    monkeypatch.delenv("WATTGATE_OPTIMIZERS_DIGITS")
    assert load_section(None, "optimizers", OptimizersSettings) == OptimizersSettings()
    cfg.write_text("optimizers:\n  digits:\n    alpha: 5\n")
    with pytest.raises(BadRequest, match=r"invalid settings: optimizers\.digits\.alpha"):
        load_section(cfg, "optimizers", OptimizersSettings)
    cfg.write_text("optimizers:\n")
    assert load_section(cfg, "optimizers", OptimizersSettings) == OptimizersSettings()
