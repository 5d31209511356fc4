"""`shipml init`: a commented shipml.yaml inferred from the data.

The comments are the field descriptions of the pydantic models in `shipml.config`, so the file a
user starts from documents itself and never drifts from what the loader accepts.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import BaseModel

from shipml.config import parse_config
from shipml.data import infer_data
from shipml.errors import ConfigError
from shipml.tasks import get_task_class

__all__ = ["init_config"]


def _scalar(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def _section(model: BaseModel, indent: int, skip: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """`key: value  # description` lines for every field of `model` (nested models become blocks)."""
    pad = " " * indent
    lines: list[str] = []
    for name, field in type(model).model_fields.items():
        if name in skip:
            continue
        value = getattr(model, name)
        doc = (field.description or "").strip()
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:" + (f"  # {doc}" if doc else ""))
            lines += _section(value, indent + 2)
            continue
        dumped = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        if isinstance(dumped, tuple):
            dumped = list(dumped)
        text = f"{pad}{name}: {_scalar(dumped)}"
        lines.append(f"{text:<44}  # {doc}" if doc else text)
    return lines


def _default_name(path: str) -> str:
    stem = path.removeprefix("sklearn:").rstrip("/").split("/")[-1]
    for suffix in (".tar.gz", ".tar.bz2", ".tgz", ".zip", ".tar", ".csv", ".jsonl", ".parquet"):
        stem = stem.removesuffix(suffix)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "run"
    return stem if stem[0].isalnum() else f"run-{stem}"


def init_config(data: str, *, task: str | None = None, name: str | None = None) -> str:
    """A commented YAML config for `data`; validated before it is returned."""
    profile = infer_data(data)
    task_name = task or profile.task
    task_cls = get_task_class(task_name)
    digits_as_images = data.strip() == "sklearn:digits" and task_cls.data_kind == "images"  # 8x8 pixels either way
    a_table = profile.format in ("csv", "jsonl", "parquet", "sklearn")  # read as a table or as texts
    text_or_table = a_table and {task_cls.data_kind, profile.kind} <= {"table", "text"}
    if task_cls.data_kind != profile.kind and not (digits_as_images or text_or_table):
        raise ConfigError(f"--task {task_name} needs {task_cls.data_kind} data, but {data} holds {profile.kind} data")
    recipe = task_cls.recipe
    data_fields: dict[str, Any] = {"path": data}
    if profile.kind in ("table", "text") and profile.target:
        data_fields["target"] = profile.target
    if task_cls.data_kind == "text" and profile.text_column:
        data_fields["text_column"] = profile.text_column
    cfg = parse_config({
        "name": name or _default_name(data),
        "data": data_fields,
        "task": {"name": task_name, **recipe.get("task", {})},
        "model": recipe.get("model", task_cls.default_model().model_dump()),
        "train": recipe.get("train", {}),
    })
    how = "given with --task" if task else "inferred"
    head = [f"# shipml.yaml, written by `shipml init --data {data}`.",
            f"# {_describe(profile.to_dict())} Task {task_name} ({how})."]
    head += [
        "# Every field below shows its default or inferred value; delete what you do not change.",
        "# Override one field at train time: shipml train THIS.yaml --set train.epochs=3",
        "",
    ]
    body = _section(cfg, 0, skip={"data", "task", "model", "train", "evaluate"})
    for key, model in (("data", cfg.data), ("task", cfg.task), ("model", cfg.model), ("train", cfg.train),
                       ("evaluate", cfg.evaluate)):
        assert isinstance(model, BaseModel)
        body += ["", f"{key}:", *_section(model, 2)]
    text = "\n".join(head + body) + "\n"
    parse_config(yaml.safe_load(text), source="generated config")  # what we print must load
    return text


def _describe(p: dict[str, Any]) -> str:
    if p["kind"] == "text":
        column = f" (column {p['text_column']!r})" if p.get("text_column") and p.get("format") != "emails" else ""
        what = f"{p['rows']} {'emails' if p.get('format') == 'emails' else 'texts'}{column}"
    elif p["kind"] == "images":
        size = "x".join(str(s) for s in p.get("image_size") or []) or "?"
        what = f"{p['rows']} images, {size}, {'grey' if p.get('channels') == 1 else 'colour'}"
    else:
        what = f"{p['rows']} rows, {len(p.get('columns') or {})} columns, target {p.get('target')!r}"
    classes = p.get("classes") or {}
    if classes:
        shown = ", ".join(f"{k} ({v})" for k, v in list(classes.items())[:10])
        more = f", ... ({p['n_classes']} in all)" if (p.get("n_classes") or 0) > 10 else ""
        what += f"; classes: {shown}{more}"
    return f"Data: {what}."



_REFERENCE_HEAD = """# shipml.yaml reference

<!-- generated by shipml.scaffold.config_reference(); tests/test_examples.py keeps it in sync:
     python -c "from shipml.scaffold import config_reference as c; open('docs/config.md','w').write(c())" -->

A config has the top-level fields `name`, `seed`, `output_dir` and the sections `data`, `task`,
`model`, `train` and `evaluate` (only `data.path` and `task.name` are required). `shipml init --data PATH`
writes one with every field and its description as a comment. Unknown fields are errors (typos never pass
silently). Any field can be overridden at train time with `--set section.field=value` (the value is parsed
as YAML: `3`, `0.1`, `true`, `[64, 32]`, `null`).

Relative `data.path` values are looked up from the working directory first, then from the config file's
folder; a run records the absolute path.
"""


def config_reference() -> str:
    """docs/config.md: one table per config section, from the pydantic models' defaults and descriptions."""
    from pydantic_core import PydanticUndefined

    from shipml.config import CNNConfig, Config, GANConfig, MLPConfig, TransformerConfig

    lines = [_REFERENCE_HEAD]

    def table(title: str, model: type[BaseModel], skip: set[str]) -> None:
        nested: list[tuple[str, type[BaseModel]]] = []
        lines.extend([f"## {title}", "", "| field | default | meaning |", "| --- | --- | --- |"])
        for name, f in model.model_fields.items():
            if name in skip:
                continue
            sub = next((a for a in getattr(f.annotation, "__args__", (f.annotation,))
                        if isinstance(a, type) and issubclass(a, BaseModel)), None)
            if sub is not None:
                nested.append((f"{title}.{name}" if title != "(top level)" else name, sub))
                default = "(section)"
            elif f.default is PydanticUndefined and f.default_factory is None:
                default = "required"
            else:
                value = f.default_factory() if f.default_factory is not None else f.default  # type: ignore[call-arg]
                default = f"`{_scalar(list(value) if isinstance(value, tuple) else value)}`"
            desc = (f.description or "").replace("|", "\\|")
            lines.append(f"| `{name}` | {default} | {desc} |")
        lines.append("")
        for sub_title, sub in nested:
            table(sub_title, sub, set())

    table("(top level)", Config, {"model"})
    for arch_model in (CNNConfig, MLPConfig, TransformerConfig, GANConfig):
        arch = arch_model.model_fields["arch"].default
        table(f"model (arch: {arch})", arch_model, {"arch"})
    return "\n".join(lines).rstrip() + "\n"
