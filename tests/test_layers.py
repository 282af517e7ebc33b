"""The architecture the folders show, checked: the ML core, the stage runtime and the studies are layers.

- ``vae`` (the model, its likelihoods, training, metrics, figures, ``vae.data``): the ML core. It
  imports nothing of DVC, of the stage runtime (``vae.runtime``), of the studies (``vae.studies``)
  or of the notebook API (``vae.api``).
- ``vae.runtime``: what turns the core into DVC stages. It imports no study and not the API.
- ``vae.api`` and ``vae.studies`` sit on top; ``stages/`` are thin scripts over the core and the runtime.
No import cycle anywhere, imports inside functions included.
"""

import subprocess
import sys
from pathlib import Path

from tests.project_imports import import_graph, imported_modules, project_modules
from vae.model import VAE, VAEConfig, save_model

REPO = Path(__file__).resolve().parent.parent


def layer(module: str) -> str:
    """``core``, ``runtime``, ``top`` (the API and the studies) or ``stages``."""
    if module.startswith("stages"):
        return "stages"
    if module == "vae.runtime" or module.startswith("vae.runtime."):
        return "runtime"
    if module in ("vae", "vae.api") or module.startswith("vae.studies"):
        return "top"
    return "core"


FORBIDDEN = {  # layer -> prefixes of modules it must not import
    "core": ("vae.runtime", "vae.studies", "vae.api", "dvc"),
    "runtime": ("vae.studies", "vae.api"),
}


def layer_violations(root: Path) -> list[str]:
    problems = []
    for name, path in project_modules(root).items():
        for imported in sorted(imported_modules(path, root, lazy=True)):
            for prefix in FORBIDDEN.get(layer(name), ()):
                if imported == prefix or imported.startswith(prefix + "."):
                    problems.append(f"{name} ({layer(name)}) imports {imported}")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle found by a depth-first search, each as the modules along it."""
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return found


def test_the_ml_core_and_the_runtime_import_nothing_of_the_layers_above_them() -> None:
    assert layer_violations(REPO) == []


def test_no_import_cycle_even_inside_functions() -> None:
    assert cycles(import_graph(REPO)) == []


def test_the_layer_check_and_the_cycle_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "vae/runtime").mkdir(parents=True)
    (tmp_path / "vae/__init__.py").write_text("")
    (tmp_path / "vae/runtime/__init__.py").write_text("")
    (tmp_path / "vae/model.py").write_text("def f():\n    from vae.runtime import cli\n")
    (tmp_path / "vae/runtime/cli.py").write_text("import vae.model\n")
    assert layer_violations(tmp_path) == ["vae.model (core) imports vae.runtime",
                                          "vae.model (core) imports vae.runtime.cli"]
    assert cycles(import_graph(tmp_path)) == [["vae.model", "vae.runtime.cli", "vae.model"]]


def test_loading_a_model_through_the_api_loads_neither_matplotlib_nor_pandas(tmp_path: Path) -> None:
    save_model(tmp_path / "model.pt", VAE(VAEConfig(hidden_dim=8)))
    code = ("import sys, vae\n"
            f"model = vae.load_model({str(tmp_path / 'model.pt')!r})\n"
            "print(model.latent_dim, sorted(m for m in ('matplotlib', 'pandas', 'dvc') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split(maxsplit=1) == ["2", "[]\n"]
