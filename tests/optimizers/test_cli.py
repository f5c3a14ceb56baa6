import argparse

import pytest

from optimizers import cli
from optimizers.settings import DigitsSettings, MinilmSettings, OptimizersSettings, ProfileSettings


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
