"""The project's import graph read from its source: which project modules a module imports.

Used by the deps test (each stage's import closure) and the layers test (who may import whom).
"""

import ast
from pathlib import Path

PROJECT_PACKAGES = ("vae", "stages")


def module_file(name: str, root: Path) -> Path | None:
    """The source file of project module ``name`` (a package's ``__init__.py``), or None if it is not ours."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    path = root.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _import_nodes(tree: ast.AST, lazy: bool) -> list[ast.Import | ast.ImportFrom]:
    """The imports of a module, functions' bodies included; a package's lazy ``__getattr__`` (PEP 562)
    only with ``lazy``: it runs only when a missing attribute is read, which no stage does."""
    lazy_nodes = set() if lazy else {id(node) for fn in ast.walk(tree)
                                     if isinstance(fn, ast.FunctionDef) and fn.name == "__getattr__"
                                     for node in ast.walk(fn)}
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in lazy_nodes]


def imported_modules(source: Path, root: Path, lazy: bool = False) -> set[str]:
    """Every module an ``import`` in ``source`` names (functions' bodies included, see ``_import_nodes``).

    ``from vae.runtime import interrupt`` names both ``vae.runtime`` and ``vae.runtime.interrupt``;
    a name that is not a module is dropped later, by ``module_file``.
    """
    names: set[str] = set()
    package = ".".join(source.relative_to(root).with_suffix("").parts[:-1])
    for node in _import_nodes(ast.parse(source.read_text(), str(source)), lazy):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_closure(module: str, root: Path) -> set[str]:
    """The project files a ``python -m module`` process imports, as paths relative to ``root``.

    Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` too.
    """
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:i]), root)
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(imported_modules(path, root))
    return {str(path.relative_to(root)) for path in seen}


def module_name(path: Path, root: Path) -> str:
    """``vae/runtime/cli.py`` -> ``vae.runtime.cli``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path) -> dict[str, Path]:
    """Every module of the project's packages, by name."""
    return {module_name(path, root): path for package in PROJECT_PACKAGES
            for path in sorted((root / package).rglob("*.py"))}


def import_graph(root: Path) -> dict[str, set[str]]:
    """Project module -> the project modules it imports anywhere (lazy imports included)."""
    modules = project_modules(root)
    return {name: {module_name(target, root) for imported in imported_modules(path, root, lazy=True)
                   if (target := module_file(imported, root)) is not None} - {name}
            for name, path in modules.items()}


def params_read(files: set[str], root: Path, fields: set[str], expansions: dict[str, set[str]]) -> set[str]:
    """The params keys that code in ``files`` reads: ``params.<key>`` for each key in ``fields``, and
    the keys behind each call named in ``expansions`` (``TrainingSettings.from_params``: every field it copies)."""
    keys: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse((root / path).read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "params" \
                    and node.attr in fields:
                keys.add(node.attr)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                keys |= expansions.get(f"{node.value.id}.{node.attr}", set())
    return keys
