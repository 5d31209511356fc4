"""Reading a shipml.yaml: YAML, `--set a.b=c` overrides, validation into `Config`, and writing it back.

Every problem becomes a `ConfigError` naming the field path, the bad value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shipml.config.schema import MODEL_ARCHS, Config
from shipml.errors import ConfigError

__all__ = ["apply_overrides", "dump_config", "load_config", "parse_config"]


def _owners(fields: list[str]) -> list[str]:
    """The architectures whose section has every one of `fields`."""
    return [arch for arch, model in MODEL_ARCHS.items() if fields and set(fields) <= set(model.model_fields)]


def _model_error(e: Any) -> str | None:
    """The line for one of the model section's discriminated-union errors, which pydantic words in its own
    terms ("Unable to extract tag using discriminator 'arch'") and locates under the arch name
    (model.cnn.hidden); None for every other error."""
    loc, kind, value = tuple(e["loc"]), e["type"], e.get("input")
    if not loc or loc[0] != "model":
        return None
    choices = "|".join(MODEL_ARCHS)
    if loc == ("model",) and kind == "union_tag_not_found":
        given = [str(k) for k in value] if isinstance(value, dict) else []
        owners = _owners(given)
        hint = ""
        if len(owners) == 1:
            hint = f" (the fields given, {', '.join(given)}, belong to {owners[0]}: --set model.arch={owners[0]})"
        elif owners:
            hint = f" ({', '.join(given)}: fields of {', '.join(owners)} alike)"
        return (f"model.arch is missing; set model.arch: {choices}{hint}. Leave out the whole model section to "
                "use the task's default architecture")
    if loc == ("model",) and kind == "union_tag_invalid":
        tag = value.get("arch") if isinstance(value, dict) else value
        return f"model.arch: {tag!r} is not an architecture; set model.arch: {choices}"
    if loc == ("model",) and kind == "model_attributes_type":
        return (f"model: expected a section such as {{arch: mlp, hidden: [64]}} (arch: {choices}), got {value!r}; "
                "leave it out to use the task's default architecture")
    if len(loc) >= 3 and loc[1] in MODEL_ARCHS:  # pydantic puts the arch into the path: model.cnn.hidden
        arch, path = str(loc[1]), ".".join(["model", *(str(p) for p in loc[2:])])
        if kind == "extra_forbidden":
            owners = _owners([str(loc[2])])
            where = f"; it belongs to arch {' or '.join(owners)}" if owners else " (check the spelling)"
            return f"{path}: not a field of arch {arch}{where}"
        return f"{path}: {_message(e)} (arch {arch})"
    return None


def _message(e: Any) -> str:
    """pydantic's message for one error, with the value that caused it."""
    msg = str(e["msg"]).removeprefix("Value error, ")
    value = e.get("input")
    return msg if isinstance(value, dict) or repr(value) in msg else f"{msg} (got {value!r})"


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for e in err.errors():
        special = _model_error(e)
        if special is not None:
            lines.append(f"  {special}")
            continue
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
