"""dvc.yaml and dvc.lock say what the code does, checked by the machine.

`dvc repro` reruns a stage when one of its deps changes, and the train stage keys its saved
state on the same deps (``vae.runtime.run_key``), so every project module a stage's process
imports must be listed, and no other: the deps test computes each stage's import closure
from the source. The committed dvc.lock must match the tree, or `dvc status` on a fresh clone
reports changed dependencies and the user's first `make pipeline` leaves it modified.
"""

import dataclasses
import hashlib
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from dvc.utils.serialize import parse_yaml

from tests import rerun_table
from tests.project_imports import PROJECT_PACKAGES, import_closure, params_read
from vae.model import VAEConfig
from vae.params import Params
from vae.runtime.dvc_yaml import read_stage, stage_names
from vae.training import TrainingSettings

REPO = Path(__file__).resolve().parent.parent

# Modules a stage imports that cannot shape any of its outputs, so that editing them must not
# rerun anything. Keep this short: each needs a reason.
NOT_DEPS = {
    "vae/__init__.py": "a docstring and the notebook API's lazy import (its __getattr__, which no stage calls)",
    "vae/data/__init__.py": "a docstring only",
    "vae/runtime/__init__.py": "a docstring only",
    "vae/errors.py": "the wording of error lines; a failed stage writes no output",
}


def deps_problems(dvc_yaml: Path, stage: str) -> list[str]:
    """How ``stage``'s deps in ``dvc_yaml`` differ from the project modules its command imports."""
    root = dvc_yaml.parent
    spec = read_stage(stage, dvc_yaml)
    module = spec.cmd.split()[2]  # python -m stages.<name> ...
    needed = import_closure(module, root) - set(NOT_DEPS)
    code = {dep for dep in spec.deps if dep.split("/")[0] in PROJECT_PACKAGES}
    return ([f"{stage}: dvc.yaml's deps lack {path}, which `python -m {module}` imports" for path in
             sorted(needed - code)]
            + [f"{stage}: dvc.yaml lists {path} among its deps, but `python -m {module}` does not import it"
               for path in sorted(code - needed)])


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def git_tracked(root: Path) -> set[str]:
    return set(subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.splitlines())


def lock_problems(root: Path) -> list[str]:
    """Where the committed dvc.lock disagrees with dvc.yaml, params.yaml and the files git tracks.

    That is what `dvc status` reports as a changed stage on a fresh clone; outputs, and deps
    that are other stages' outputs, are missing there and are not compared.
    """
    # Read as DVC reads them (YAML 1.2: PyYAML would take dvc.lock's `1e-08` for a string)
    lock = parse_yaml((root / "dvc.lock").read_text(), "dvc.lock")["stages"]
    params = parse_yaml((root / "params.yaml").read_text(), "params.yaml")
    tracked = git_tracked(root)
    problems = [f"{name}: not in dvc.lock" for name in stage_names(root / "dvc.yaml") if name not in lock]
    for name, locked in lock.items():
        spec = read_stage(name, root / "dvc.yaml")
        if locked["cmd"] != spec.cmd:
            problems.append(f"{name}: its command changed since dvc.lock recorded it")
        locked_deps = {dep["path"]: dep for dep in locked.get("deps", [])}
        if set(locked_deps) != set(spec.deps):
            problems.append(f"{name}: dvc.lock records deps {sorted(set(locked_deps) ^ set(spec.deps))} "
                            "that dvc.yaml does not list, or the other way round")
        problems += [f"{name}: {path} changed since dvc.lock recorded it" for path, dep in locked_deps.items()
                     if path in tracked and md5(root / path) != dep.get("md5")]
        locked_params = locked.get("params", {}).get("params.yaml", {})
        problems += [f"{name}: param {key} is {params.get(key)!r} in params.yaml but {locked_params.get(key)!r} in "
                     "dvc.lock" for key in spec.params if locked_params.get(key) != params.get(key)]
    return problems


@pytest.mark.parametrize("stage", stage_names(REPO / "dvc.yaml"))
def test_each_stage_lists_exactly_the_project_modules_it_imports(stage: str) -> None:
    assert deps_problems(REPO / "dvc.yaml", stage) == []


def params_problems(dvc_yaml: Path, stage: str) -> list[str]:
    """How ``stage``'s ``params:`` in ``dvc_yaml`` differ from the keys its code reads (``params.<key>``,
    and every key behind ``TrainingSettings.from_params`` and ``VAEConfig.from_params``). check-params
    reads them all by design: params.yaml itself is its dep."""
    if stage == "check-params":
        return []
    root, spec = dvc_yaml.parent, read_stage(stage, dvc_yaml)
    module = shlex.split(spec.cmd)[2]
    params = {field.name for field in dataclasses.fields(Params)}
    readers = {f"{reader.__name__}.from_params": {field.name for field in dataclasses.fields(reader)} & params
               for reader in (TrainingSettings, VAEConfig)}
    read = params_read(import_closure(module, root) - {"vae/params.py"}, root, params, readers)
    return ([f"{stage}: dvc.yaml's params lack {key}, which `python -m {module}` reads" for key in sorted(
        read - set(spec.params))]
            + [f"{stage}: dvc.yaml lists param {key}, which `python -m {module}` never reads" for key in sorted(
                set(spec.params) - read)])


@pytest.mark.parametrize("stage", stage_names(REPO / "dvc.yaml"))
def test_each_stage_lists_exactly_the_params_it_reads(stage: str) -> None:
    """DVC reruns a stage, and the train stage's run key changes, only for the params it lists."""
    assert params_problems(REPO / "dvc.yaml", stage) == []


def test_the_params_check_names_the_stage_and_the_key_both_ways(tmp_path: Path) -> None:
    shutil.copytree(REPO / "vae", tmp_path / "vae")
    shutil.copytree(REPO / "stages", tmp_path / "stages")
    shutil.copy(REPO / "params.yaml", tmp_path)  # dvc.yaml's ${image_folder}
    text = (REPO / "dvc.yaml").read_text()
    assert text.count("      - lr\n") == 1 and text.count("      - n_samples\n") == 1
    broken = text.replace("      - lr\n", "", 1).replace("      - n_samples\n", "      - n_samples\n      - beta\n")
    (tmp_path / "dvc.yaml").write_text(broken)
    assert params_problems(tmp_path / "dvc.yaml", "train") == [
        "train: dvc.yaml's params lack lr, which `python -m stages.train` reads"]
    assert params_problems(tmp_path / "dvc.yaml", "sample") == [
        "sample: dvc.yaml lists param beta, which `python -m stages.sample` never reads"]


def test_the_rerun_table_in_docs_development_is_current() -> None:
    """Regenerate it with `python -m tests.rerun_table` after changing a stage's deps."""
    assert rerun_table.current_block(rerun_table.DOC.read_text()) == rerun_table.markdown()


def test_editing_the_vae_never_reruns_the_data_stages_or_the_classifier() -> None:
    table = rerun_table.reruns()
    for module in ("vae/model.py", "vae/training.py", "vae/likelihoods.py"):
        assert not {"check-params", "download", "split", "classifier"} & set(table[module]), module
    assert "train" not in table["vae/classifier.py"]
    assert not {"train", "classifier"} & set(table["vae/metrics.py"])


def test_the_deps_check_names_the_stage_and_the_missing_file(tmp_path: Path) -> None:
    shutil.copytree(REPO / "vae", tmp_path / "vae")
    shutil.copytree(REPO / "stages", tmp_path / "stages")
    shutil.copy(REPO / "params.yaml", tmp_path)  # dvc.yaml's ${image_folder}
    text = (REPO / "dvc.yaml").read_text()
    assert "      - vae/model.py\n" in text
    (tmp_path / "dvc.yaml").write_text(text.replace("      - vae/model.py\n", "", 1))
    problems = [p for stage in stage_names(tmp_path / "dvc.yaml") for p in deps_problems(tmp_path / "dvc.yaml", stage)]
    assert problems and all("lack vae/model.py, which `python -m stages." in p for p in problems)


def test_the_import_closure_follows_imports_inside_functions(tmp_path: Path) -> None:
    (tmp_path / "stages").mkdir()
    (tmp_path / "vae").mkdir()
    (tmp_path / "stages/s.py").write_text("def main():\n    from vae import a\n")
    (tmp_path / "vae/__init__.py").write_text("")
    (tmp_path / "vae/a.py").write_text("import vae.b\n")
    (tmp_path / "vae/b.py").write_text("import os\n")
    assert import_closure("stages.s", tmp_path) == {"stages/s.py", "vae/__init__.py", "vae/a.py", "vae/b.py"}


def test_the_committed_lock_matches_the_code_params_and_commands() -> None:
    assert lock_problems(REPO) == [], "update dvc.lock: `make pipeline` (or `dvc commit STAGE` where " \
                                      "the change leaves its outputs as they are), and commit it"


def test_the_lock_check_finds_a_file_edited_without_updating_the_lock(tmp_path: Path) -> None:
    for name in ("dvc.yaml", "dvc.lock", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    for path in git_tracked(REPO):
        if path.startswith(("vae/", "stages/")):
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / path, tmp_path / path)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    assert lock_problems(tmp_path) == lock_problems(REPO)
    with (tmp_path / "vae/model.py").open("a") as f:
        f.write("# an edit\n")
    (tmp_path / "params.yaml").write_text((tmp_path / "params.yaml").read_text().replace("lr: 0.001", "lr: 0.002"))
    problems = lock_problems(tmp_path)
    assert "train: vae/model.py changed since dvc.lock recorded it" in problems
    assert "train: param lr is 0.002 in params.yaml but 0.001 in dvc.lock" in problems
