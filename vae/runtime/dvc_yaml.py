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

# DVC runs every stage from the repository root, where these two files are.
DVC_YAML = Path("dvc.yaml")
PARAMS_FILE = Path("params.yaml")
_VARIABLE = re.compile(r"\$\{\s*([\w.-]+)\s*\}")


@dataclass(frozen=True)
class StageSpec:
    name: str
    cmd: str
    deps: tuple[str, ...]
    params: tuple[str, ...]  # keys of params.yaml
    outs: tuple[str, ...]  # outs, metrics and plots the stage declares
    removed_on_run: tuple[str, ...] = ()  # those DVC deletes just before the stage runs (not persisted)
    uncached: tuple[str, ...] = ()  # those git keeps instead of DVC's cache (cache: false)

    def restore_hint(self) -> str:
        """How to get back the outputs DVC deleted before a run that then failed ("" if none)."""
        if not self.removed_on_run:
            return ""
        cached = [out for out in self.removed_on_run if out not in self.uncached]
        git = [out for out in self.removed_on_run if out in self.uncached]
        commands = ([f"`dvc checkout {self.name}`"] if cached else []) + (
            [f"`git checkout -- {' '.join(git)}`"] if git else [])
        return f"; DVC removed its last outputs before it ran, to get them back: {' and '.join(commands)}"


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


def _with_option(entries: list[Any], option: str, value: bool) -> list[str]:
    """The names of ``entries`` whose ``option`` is ``value`` (DVC's defaults: persist false, cache true)."""
    default = {"persist": False, "cache": True}[option]
    return [name for entry in entries for name, opts in ([(entry, {})] if isinstance(entry, str) else entry.items())
            if (opts or {}).get(option, default) == value]


def _load(source: Path, text: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parsed dvc.yaml and the context of its ``${...}``: params.yaml beside it, then its ``vars``.

    As DVC's: it reads params.yaml into the context by default (``${image_folder}``), before ``vars``.
    """
    try:
        pipeline = yaml.safe_load(source.read_text() if text is None else text)
    except FileNotFoundError:
        raise UserError(f"{source} not found; run the stage from the repository root (`dvc repro`)") from None
    params_file = source.parent / PARAMS_FILE
    params = yaml.safe_load(params_file.read_text()) if params_file.is_file() else None
    context: dict[str, Any] = dict(params) if isinstance(params, dict) else {}
    for entry in pipeline.get("vars", []):
        if isinstance(entry, dict):
            context.update(entry)
    return pipeline, context


def named_paths(dvc_yaml: str | Path = DVC_YAML, text: str | None = None) -> dict[str, str]:
    """The ``paths`` dictionary of dvc.yaml's ``vars``: every file and folder the pipeline names, once.

    ``text``: that dvc.yaml's content, if given (e.g. read from another revision or repository).
    """
    return dict(_load(Path(dvc_yaml), text)[1].get("paths", {}))


def metrics_files(dvc_yaml: str | Path = DVC_YAML, text: str | None = None) -> list[str]:
    """The top-level ``metrics`` of a dvc.yaml (``text`` if given, e.g. read from another revision)."""
    pipeline, context = _load(Path(dvc_yaml), text)
    return [_resolve(path, context, Path(dvc_yaml)) for path in pipeline.get("metrics", [])]


def stage_names(dvc_yaml: str | Path = DVC_YAML) -> list[str]:
    """The stages of ``dvc_yaml``, in the file's order."""
    return list(_load(Path(dvc_yaml), None)[0].get("stages", {}))


def read_stage(name: str, dvc_yaml: str | Path = DVC_YAML) -> StageSpec:
    """The stage ``name`` of ``dvc_yaml`` with the ``vars`` it uses filled in."""
    source = Path(dvc_yaml)
    pipeline, context = _load(source, None)
    if name not in pipeline.get("stages", {}):
        raise UserError(f"{source} has no stage {name!r}; restore it from git")
    stage = pipeline["stages"][name]
    params = []
    for entry in stage.get("params", []):  # `key`, or `{file: [keys]}` (only params.yaml is read)
        params.extend([entry] if isinstance(entry, str) else [k for keys in entry.values() for k in keys])
    entries = stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", [])

    def resolved(paths: list[str]) -> tuple[str, ...]:
        return tuple(_resolve(path, context, source) for path in paths)

    return StageSpec(name=name, cmd=_resolve(stage["cmd"], context, source), deps=resolved(stage.get("deps", [])),
                     params=tuple(params), outs=resolved(_names(entries)),
                     removed_on_run=resolved(_with_option(entries, "persist", False)),
                     uncached=resolved(_with_option(entries, "cache", False)))


def stage_writing(path: str | Path, dvc_yaml: str | Path = DVC_YAML) -> str | None:
    """The stage of ``dvc_yaml`` whose outputs hold ``path`` (the output itself or a file in it), or None."""
    path = Path(path)
    try:
        names = stage_names(dvc_yaml)
        for name in names:
            if any(Path(out) == path or Path(out) in path.parents for out in read_stage(name, dvc_yaml).outs):
                return name
    except (UserError, OSError):
        return None
    return None
