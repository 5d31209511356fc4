"""The search space of `tune.space`: parsed and checked against the config before any trial runs, then
sampled per trial into a config that validates like any shipml.yaml.

    train.lr:         {loguniform: [1e-5, 1e-3]}
    train.dropout:    {uniform: [0.0, 0.3]}
    train.epochs:     {int: [2, 8]}                 (optional `step`)
    train.batch_size: {logint: [16, 128]}
    model.hidden:     {choice: [[64], [128, 64]]}   (any YAML values)
    train.momentum:   {uniform: [0.8, 0.99], when: {train.optimizer: sgd}}   conditional

A parameter is a dotted config field. Fields that change what is learned from, or where runs go, are not
tunable (name, seed, output_dir, data.*, task.name, evaluate.*, compress.*, release.*, tune.*): tuning them
would compare runs that are not comparable. Bounds are checked by validating the config at each end (and with
every choice), so an out-of-range or unknown field is refused with the same message `shipml train` gives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shipml.config import Config, parse_config
from shipml.errors import ConfigError

__all__ = ["KINDS", "NOT_TUNABLE", "Param", "apply", "parse_space", "recipe", "suggest"]

KINDS = ("loguniform", "uniform", "int", "logint", "choice")
NOT_TUNABLE = ("name", "seed", "output_dir", "data", "task.name", "evaluate", "compress", "release", "tune")


@dataclass(frozen=True)
class Param:
    path: str
    kind: str
    low: float | None = None
    high: float | None = None
    step: int | None = None
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, Any], ...] = ()

    def values(self) -> list[Any]:
        """The values that bound the space: both ends, or every choice."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


def _get(tree: dict[str, Any], path: str) -> Any:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def apply(tree: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config dict with dotted fields set (sections created where missing)."""
    out = json.loads(json.dumps(tree))
    for path, value in values.items():
        node = out
        parts = path.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def _number(path: str, spec: Any, kind: str, integer: bool) -> tuple[float, float]:
    if not (isinstance(spec, list) and len(spec) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                             for v in spec)):
        raise ConfigError(f"tune.space.{path}: {kind} needs [low, high], two numbers; got {spec!r}")
    low, high = spec
    if integer and not all(float(v).is_integer() for v in spec):
        raise ConfigError(f"tune.space.{path}: {kind} needs whole numbers; got {spec!r}")
    if not low < high:
        raise ConfigError(f"tune.space.{path}: the range [{low}, {high}] is empty; give low < high")
    if kind.startswith("log") and low <= 0:
        raise ConfigError(f"tune.space.{path}: a log range must start above 0 (got {low}); e.g. [1e-5, 1e-3]")
    return low, high


def _param(path: str, spec: Any) -> Param:
    if not isinstance(spec, dict):
        raise ConfigError(f"tune.space.{path}: expected a mapping like {{loguniform: [1e-5, 1e-3]}}, got {spec!r}")
    when = spec.get("when") or {}
    if not isinstance(when, dict):
        raise ConfigError(f"tune.space.{path}.when: expected {{field: value}}, got {when!r}")
    kinds = [k for k in spec if k != "when"]
    unknown = [k for k in kinds if k not in (*KINDS, "step")]
    if unknown or len([k for k in kinds if k in KINDS]) != 1:
        raise ConfigError(f"tune.space.{path}: give exactly one of {', '.join(KINDS)} (and optionally step, when); "
                          f"got {sorted(spec)}")
    kind = next(k for k in kinds if k in KINDS)
    conditions = tuple(sorted(when.items()))
    if kind == "choice":
        choices = spec[kind]
        if not isinstance(choices, list) or len(choices) < 2:
            raise ConfigError(f"tune.space.{path}: choice needs a list of at least two values; got {choices!r}")
        return Param(path, kind, choices=tuple(choices), when=conditions)
    low, high = _number(path, spec[kind], kind, integer=kind in ("int", "logint"))
    step = spec.get("step")
    if step is not None and (kind != "int" or not isinstance(step, int) or step < 1):
        raise ConfigError(f"tune.space.{path}: step applies to int ranges and must be a whole number >= 1")
    return Param(path, kind, low, high, step, when=conditions)


def parse_space(cfg: Config) -> list[Param]:
    """tune.space as parameters, every one checked against the config (ConfigError naming the field)."""
    space = cfg.tune.space
    if not space:
        raise ConfigError("tune.space is empty: list the fields to search, e.g. tune: {space: {train.lr: "
                          "{loguniform: [1e-5, 1e-3]}}} (docs/scaling.md)")
    base = cfg.model_dump(mode="json")
    params = []
    for path, spec in space.items():
        if any(path == p or path.startswith(p + ".") for p in NOT_TUNABLE):
            raise ConfigError(f"tune.space.{path}: not tunable (runs that differ in {path} are not comparable; "
                              f"tunable: model.*, train.*, task.* except task.name)")
        param = _param(path, spec)
        for value in param.values():
            try:
                parse_config(apply(base, {path: value}), source=f"tune.space.{path} = {value!r}")
            except ConfigError as err:
                raise ConfigError(f"tune.space.{path}: the value {value!r} is not a valid config: {err}") from None
        params.append(param)
    names = {p.path for p in params}
    for p in params:
        for other, _ in p.when:
            if other not in names and _get(base, other) is None:
                raise ConfigError(f"tune.space.{p.path}.when: {other} is neither a searched field nor set in the "
                                  "config")
    return params


def suggest(trial: Any, params: list[Param], base: dict[str, Any]) -> dict[str, Any]:
    """This trial's values (conditional parameters only where their condition holds); optuna records each."""
    chosen: dict[str, Any] = {}
    for p in params:
        current = {**{o: _get(base, o) for o, _ in p.when}, **chosen}
        if any(current.get(o) != v for o, v in p.when):
            continue
        if p.kind == "choice":
            if all(c is None or isinstance(c, (bool, int, float, str)) for c in p.choices):
                chosen[p.path] = trial.suggest_categorical(p.path, list(p.choices))
            else:  # optuna takes scalars: lists and dicts go in as JSON
                chosen[p.path] = json.loads(trial.suggest_categorical(p.path, [json.dumps(c) for c in p.choices]))
        elif p.kind in ("int", "logint"):
            chosen[p.path] = trial.suggest_int(p.path, int(p.low), int(p.high), step=p.step or 1,
                                               log=p.kind == "logint")
        else:
            chosen[p.path] = trial.suggest_float(p.path, float(p.low), float(p.high), log=p.kind == "loguniform")
    return chosen


def recipe(params: list[Param], base: dict[str, Any]) -> dict[str, Any]:
    """The config's own values of the searched fields that lie in the space (optuna's names and encodings): the
    study's first trial, so the shipped recipe is always among the candidates it is compared with."""
    out: dict[str, Any] = {}
    for p in params:
        value = _get(base, p.path)
        if value is None:
            continue
        if p.kind == "choice":
            if value in p.choices:
                scalar = all(c is None or isinstance(c, (bool, int, float, str)) for c in p.choices)
                out[p.path] = value if scalar else json.dumps(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and p.low <= value <= p.high:
            out[p.path] = value
    return out
