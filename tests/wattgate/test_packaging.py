"""Every room of the product is installed: a room missing from the package list imports from the repo
root (tests, `make serve` there) and nowhere else (an installed gateway, Ray workers elsewhere)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = {"tests", "bench"}  # run from a checkout, never installed


def test_every_top_level_package_is_in_the_install_list():
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    rooms = {p.parent.name for p in ROOT.glob("*/__init__.py")} - DEV_ONLY
    missing = sorted(r for r in rooms if f"{r}*" not in include)
    assert missing == [], f"add {missing} to [tool.setuptools.packages.find] include in pyproject.toml"
