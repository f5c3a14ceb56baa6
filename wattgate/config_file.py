"""The one YAML config file under ``WATTGATE_`` environment variables: how every command reads its typed settings.

Serving reads most sections (``wattgate.settings``); a command with settings of its own
(``wattgate optimize``, ``wattgate loadtest``) reads only its section of the same file with
``load_section``, so serving never imports those commands and they never validate serving's sections.
Environment variables override the file; a section and its field are joined by one underscore
(``WATTGATE_CACHE_URL`` sets ``cache.url``, ``WATTGATE_OPTIMIZERS_WORK_DIR`` sets ``optimizers.work_dir``).
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError, create_model
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from wattgate.errors import BadRequest
from wattgate.yamlfile import read_yaml

# Sections of the file that other commands read and validate; serving settings skip them unread.
COMMAND_SECTIONS = ("loadtest", "optimizers")

M = TypeVar("M", bound=BaseModel)

# The file's values for the settings being built right now (set by ``build``).
_FILE_VALUES: ContextVar[dict[str, Any]] = ContextVar("wattgate_config_file_values", default={})


def read_config(config_file: str | Path | None) -> dict[str, Any]:
    """The file's top-level mapping; no file is an empty one."""
    if not config_file:
        return {}
    data = read_yaml(config_file, "config") or {}
    if not isinstance(data, dict):
        raise BadRequest(f"config file {config_file} must hold a mapping at the top level")
    return data


class _FileSource(PydanticBaseSettingsSource):
    def get_field_value(self, field, field_name):  # pragma: no cover - unused by __call__
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _FILE_VALUES.get()


class FileSettings(BaseSettings):
    """Settings whose values come from keyword overrides, then ``WATTGATE_`` variables, then the file."""

    model_config = SettingsConfigDict(
        env_prefix="WATTGATE_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
    )

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return (init_settings, env_settings, _FileSource(settings_cls))


def build(settings_cls: type[FileSettings], file_values: dict[str, Any], **overrides: Any) -> Any:
    """``settings_cls`` from these file values under the environment; invalid values raise BadRequest."""
    token = _FILE_VALUES.set(file_values)
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise BadRequest("invalid settings: " + "; ".join(lines)) from None
    finally:
        _FILE_VALUES.reset(token)


def load_section(config_file: str | Path | None, section: str, model: type[M]) -> M:
    """The file's ``section`` under its ``WATTGATE_<SECTION>_`` variables, validated by ``model``; other sections are not read."""
    value = read_config(config_file).get(section)
    wrapper = create_model(f"{model.__name__}File", __base__=FileSettings, **{section: (model, model())})
    return getattr(build(wrapper, {} if value is None else {section: value}), section)
