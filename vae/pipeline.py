"""dvc.yaml as data: a stage's command, dependencies and params, with its ``${...}`` paths resolved.

The train stage keys its saved training state on exactly what DVC keys the stage on,
read from here, so the two can never disagree about whether old work is still valid.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vae.errors import UserError

_VARIABLE = re.compile(r"\$\{\s*([\w.-]+)\s*\}")


@dataclass(frozen=True)
class StageSpec:
    name: str
    cmd: str
    deps: tuple[str, ...]
    params: tuple[str, ...]  # keys of params.yaml
    outs: tuple[str, ...]  # outs, metrics and plots the stage declares


def _lookup(context: dict[str, Any], dotted: str, source: Path) -> str:
    value: Any = context
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise UserError(f"{source}: ${{{dotted}}} is not defined in its vars; define it there")
        value = value[part]
    return str(value)


def _resolve(text: str, context: dict[str, Any], source: Path) -> str:
    return _VARIABLE.sub(lambda m: _lookup(context, m.group(1), source), text)


def _names(entries: list[Any]) -> list[str]:
    """Paths or keys of a dvc.yaml list whose entries are ``name`` or ``{name: {options}}``."""
    return [entry if isinstance(entry, str) else name for entry in entries
            for name in ([entry] if isinstance(entry, str) else entry)]


def _load(source: Path, text: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parsed dvc.yaml and the context of its ``vars`` (the dictionaries written in the file)."""
    try:
        pipeline = yaml.safe_load(source.read_text() if text is None else text)
    except FileNotFoundError:
        raise UserError(f"{source} not found; run the stage from the repository root (`dvc repro`)") from None
    context: dict[str, Any] = {}
    for entry in pipeline.get("vars", []):
        if isinstance(entry, dict):
            context.update(entry)
    return pipeline, context


def named_paths(dvc_yaml: str | Path = "dvc.yaml") -> dict[str, str]:
    """The ``paths`` dictionary of dvc.yaml's ``vars``: every file and folder the pipeline names, once."""
    return dict(_load(Path(dvc_yaml), None)[1].get("paths", {}))


def metrics_files(dvc_yaml: str | Path = "dvc.yaml", text: str | None = None) -> list[str]:
    """The top-level ``metrics`` of a dvc.yaml (``text`` if given, e.g. read from another revision)."""
    pipeline, context = _load(Path(dvc_yaml), text)
    return [_resolve(path, context, Path(dvc_yaml)) for path in pipeline.get("metrics", [])]


def read_stage(name: str, dvc_yaml: str | Path = "dvc.yaml") -> StageSpec:
    """The stage ``name`` of ``dvc_yaml`` with the ``vars`` it uses filled in."""
    source = Path(dvc_yaml)
    pipeline, context = _load(source, None)
    if name not in pipeline.get("stages", {}):
        raise UserError(f"{source} has no stage {name!r}; restore it from git")
    stage = pipeline["stages"][name]
    params = []
    for entry in stage.get("params", []):  # `key`, or `{file: [keys]}` (only params.yaml is read)
        params.extend([entry] if isinstance(entry, str) else [k for keys in entry.values() for k in keys])
    outs = _names(stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []))
    return StageSpec(name=name, cmd=_resolve(stage["cmd"], context, source),
                     deps=tuple(_resolve(d, context, source) for d in stage.get("deps", [])),
                     params=tuple(params), outs=tuple(_resolve(o, context, source) for o in outs))
