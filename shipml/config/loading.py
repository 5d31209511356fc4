"""Reading a shipml.yaml: YAML, `--set a.b=c` overrides, validation into `Config`, and writing it back.

Every problem becomes a `ConfigError` naming the field path, the bad value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shipml.config.schema import Config
from shipml.errors import ConfigError

__all__ = ["apply_overrides", "dump_config", "load_config", "parse_config"]


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; `shipml init` writes a commented example)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        value = e.get("input")
        shown = "" if e["type"] in ("missing",) or isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {path}: {msg}{shown}")
    return "\n".join(lines)


def _parse_value(text: str) -> Any:
    """Parse the right-hand side of `--set a.b=VALUE` as YAML (so 3, 0.1, true, [1,2], null work)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each `a.b.c=value` override applied."""
    out: dict[str, Any] = _deep_copy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=3")
        key, _, value = item.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set {item!r}: empty key")
        node = out
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = {}
                node[p] = child
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {p!r} is a value, not a section")
            node = child
        node[parts[-1]] = _parse_value(value)
    return out


def _deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d


def parse_config(raw: dict[str, Any], source: str = "<dict>", overrides: list[str] | None = None) -> Config:
    """Validate a config given as a dict (after applying overrides)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid config ({source}): expected a mapping at the top level, got {type(raw).__name__}")
    if overrides:
        raw = apply_overrides(raw, overrides)
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read and validate a shipml.yaml; relative data paths are resolved against the config's folder."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p} (write one with `shipml init --data PATH > {p.name}`)")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{p} is not valid YAML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p} is not a UTF-8 text file") from None
    if raw is None:
        raise ConfigError(f"{p} is empty; write one with `shipml init --data PATH > {p.name}`")
    cfg = parse_config(raw, source=str(p), overrides=overrides)
    return _resolve_paths(cfg, p.parent)


def _resolve_paths(cfg: Config, base: Path) -> Config:
    data_path = cfg.data.path
    if data_path.startswith("sklearn:"):
        return cfg
    candidate = Path(data_path).expanduser()
    if not candidate.is_absolute() and not candidate.exists() and (base / candidate).exists():
        candidate = (base / candidate).resolve()
        return cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(candidate)})})
    return cfg


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML (what a run directory stores)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
