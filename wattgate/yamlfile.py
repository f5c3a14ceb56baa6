"""Reading the YAML files users write (settings, routing topology, simulator scenarios) with one kind of error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from wattgate.errors import BadRequest


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed document; a missing file or bad YAML is a BadRequest naming ``what`` ("config", "topology")."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise BadRequest(f"{what} file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise BadRequest(f"{what} file {path} is not valid YAML: {exc}") from exc
