"""Loading the settings: `config/*.yaml` read once, overridden by `RISKFLOW_*` environment
variables, validated into `Settings` (`load_settings`, called by the entry point and passed
down). A validation error names the file and the field (`ConfigError`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from riskflow.config.settings import ENV_PREFIX, YAML_DATA, Settings
from riskflow.errors import ConfigError

CONFIG_FILES = (
    "riskflow.yaml",
    "api_keys.yaml",
    "cameras.yaml",
    "sites.yaml",
    "console.yaml",
    "people.yaml",
)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, not {type(loaded).__name__}")
    return loaded


def _load_files(config_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """Merge the config files; remember which file each top-level field came from."""
    data: dict[str, Any] = {}
    origins: dict[str, Path] = {}
    for name in CONFIG_FILES:
        path = config_dir / name
        if not path.exists():
            continue
        content = _read_yaml(path)
        if name == "api_keys.yaml":
            content = {"keys": content} if content else {}
        for field, value in content.items():
            if field in data:
                raise ConfigError(f"{path}: {field!r} is also set in {origins[field]}")
            data[field] = value
            origins[field] = path
    return data, origins


def _describe(exc: ValidationError, origins: dict[str, Path]) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        top = loc[0] if loc else ""
        env_name = ENV_PREFIX + "__".join(loc).upper()
        if env_name in os.environ:
            where = f"environment variable {env_name}"
        elif top in origins:
            where = str(origins[top])
        else:
            where = "settings"
        field = ".".join(loc[1:] if top == "keys" and len(loc) > 1 else loc)
        if top == "keys" and origins.get("keys"):
            field = field or "api_keys.yaml"
        lines.append(f"  {where}: {field}: {err['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(config_dir: Path | str | None = None, **overrides: Any) -> Settings:
    """Read `config_dir` (default `$RISKFLOW_CONFIG_DIR` or ./config) and the environment."""
    directory = Path(config_dir or os.environ.get(ENV_PREFIX + "CONFIG_DIR") or "config")
    if config_dir is not None and not directory.is_dir():
        raise ConfigError(f"config directory {directory} does not exist")
    data, origins = _load_files(directory) if directory.is_dir() else ({}, {})
    data["config_dir"] = directory
    token = YAML_DATA.set(data)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origins)) from None
    finally:
        YAML_DATA.reset(token)
