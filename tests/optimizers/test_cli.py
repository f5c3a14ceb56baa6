import argparse

import pytest

from optimizers import cli
from optimizers.settings import DigitsSettings, MinilmSettings, OptimizersSettings, ProfileSettings
from wattgate.errors import BadRequest


def _parser():
    p = argparse.ArgumentParser(prog="wattgate")
    cli.register(p.add_subparsers(dest="command", required=True))
    return p


def test_optimize_subcommand_parses_its_options():
    args = _parser().parse_args(["optimize", "digits", "--repository", "repo", "--seeds", "3", "--quick"])
    assert args.pipeline == "digits" and str(args.repository) == "repo" and args.seeds == 3 and args.quick
    assert args.func is cli.run


def test_unknown_pipeline_is_refused():
    with pytest.raises(SystemExit):
        _parser().parse_args(["optimize", "resnet"])


def test_importing_the_cli_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, optimizers.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_settings_validate():
    assert OptimizersSettings().digits.seeds == 5
    with pytest.raises(ValueError):
        DigitsSettings(alpha=1.5)
    with pytest.raises(ValueError):
        ProfileSettings(batch_sizes=(0, 8))
    assert ProfileSettings(batch_sizes=(32, 1, 8, 8)).batch_sizes == (1, 8, 32)
    with pytest.raises(ValueError):
        OptimizersSettings(unknown=1)
    with pytest.raises(ValueError, match="different number of layers"):
        MinilmSettings(students=((0, 1), (2, 3)))
    with pytest.raises(ValueError):
        MinilmSettings(students=((0, 6),))
    mixed = MinilmSettings(students=[[0, 1, 3, 5], {"layers": [0, 1, 3, 5], "ffn": 768}, {"layers": [0, 1, 2, 3, 4, 5], "ffn": 512}])
    assert [s.name for s in mixed.students] == ["student-l4", "student-l4-f768", "student-l6-f512"]
    with pytest.raises(ValueError, match="ffn width"):
        MinilmSettings(students=[{"layers": [0, 1], "ffn": 64}, {"layers": [2, 3], "ffn": 64}])
    with pytest.raises(ValueError):
        MinilmSettings(students=[{"layers": [0, 1], "ffn": 4096}])
    recon = MinilmSettings(students=[{"layers": [0, 1, 2, 3, 4, 5], "ffn": 768},
                                     {"layers": [0, 1, 2, 3, 4, 5], "ffn": 768, "init": "reconstruct"}])
    assert [s.name for s in recon.students] == ["student-l6-f768", "student-l6-f768-recon"]
    assert "init" not in recon.students[0].shape() and recon.students[1].shape()["init"] == "reconstruct"
    with pytest.raises(ValueError):
        MinilmSettings(students=[{"layers": [0, 1], "init": "random"}])
    with pytest.raises(ValueError):
        MinilmSettings(calibration_sentences=0)
    assert MinilmSettings(train_domain_weights={"fortunes-train": 4}).train_domain_weights == {"fortunes-train": 4.0}
    for bad in ({"fortunes-heldout": 2}, {"man-api": -1}):
        with pytest.raises(ValueError, match="train_domain_weights"):
            MinilmSettings(train_domain_weights=bad)


def test_optimize_reads_its_section_of_the_shared_config_file(tmp_path, monkeypatch):
    cfg = tmp_path / "wattgate.yaml"
    # The serving sections are not the optimize command's to validate (port 0 would fail serving).
    cfg.write_text("server:\n  port: 0\nloadtest:\n  users: 0\n"
                   "optimizers:\n  torch_threads: 2\n  digits:\n    seeds: 7\n    epochs: 11\n")
    monkeypatch.setenv("WATTGATE_OPTIMIZERS_WORK_DIR", str(tmp_path / "work"))
    s = cli.settings_from_args(_parser().parse_args(["optimize", "digits", "--config", str(cfg)]))
    assert (s.torch_threads, s.digits.seeds, s.digits.epochs) == (2, 7, 11)
    assert s.work_dir == tmp_path / "work" and s.profile == ProfileSettings()
    s = cli.settings_from_args(_parser().parse_args(["optimize", "digits", "--config", str(cfg), "--seeds", "3"]))
    assert (s.digits.seeds, s.digits.epochs) == (3, 11)  # a flag beats the file
    cfg.write_text("optimizers:\n  digits:\n    alpha: 1.5\n")
    with pytest.raises(BadRequest, match=r"optimizers\.digits\.alpha"):
        cli.settings_from_args(_parser().parse_args(["optimize", "digits", "--config", str(cfg)]))
