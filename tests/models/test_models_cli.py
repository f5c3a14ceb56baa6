"""The models CLI is the registry's gate for CI pipelines: readable output, non-zero on refusal."""

from __future__ import annotations

import numpy as np

from models.digits import mlp_to_onnx
from wattgate.cli import main


def test_register_list_promote_refusal_and_retire(tmp_path, capsys):
    rng = np.random.default_rng(0)
    onnx = tmp_path / "fp32.onnx"
    mlp_to_onnx([rng.random((64, 4)), rng.random((4, 10))], [np.zeros(4), np.zeros(10)], onnx)
    repo = ["models", "--repository", str(tmp_path / "repo")]
    assert main([*repo, "register", "m", "1", str(onnx), "--owner", "me"]) == 0
    assert main([*repo, "list"]) == 0
    assert "m                    1          staging" in capsys.readouterr().out
    assert main([*repo, "promote", "m", "1"]) == 2  # no energy profile yet
    assert "no energy profile" in capsys.readouterr().err
    assert main([*repo, "retire", "m", "1"]) == 0
    assert main([*repo, "show", "m", "1"]) == 0
    assert '"stage": "retired"' in capsys.readouterr().out
    assert main([*repo, "show", "../x"]) == 2
