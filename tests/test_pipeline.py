"""The whole DVC pipeline in a temporary git repo, with small params.

`dvc repro` makes exactly the declared outputs; a second `dvc repro` runs nothing; a bad
training param fails without losing the last results; a typo'd key is rejected even when
no stage reads it; `dvc exp run -S latent_dim=3`
changes the metrics without rerunning download or split; a teammate gets every result
through a DVC remote without training; `dvc plots show` draws every plot.
The project runs once (``tests.conftest.pipeline``, never changed afterwards); every test that
changes anything works on a copy of it of its own (``project``), so any test runs alone and in
any order. Needs a data source: `VAE_DATA_MIRROR` (CI sets it) or the official mirrors.
"""

import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.commands import run
from tests.conftest import fault_env
from vae.data.download import MIRROR_ENV
from vae.runtime.dvc_yaml import read_stage

REPO = Path(__file__).resolve().parent.parent
STAGES = ["check-params", "download", "split", "classifier", "train", "latent-density", "evaluate", "sample",
          "embed-latents", "plot"]
AFTER_TRAIN = ["check-params", "train", "latent-density", "evaluate", "sample", "embed-latents", "plot"]

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("data_source")]


def stages_run(output: str) -> list[str]:
    return [s for s in STAGES if f"Running stage '{s}'" in output]


def declared_outputs(repo: Path) -> list[Path]:
    return [repo / out for stage in STAGES for out in read_stage(stage, repo / "dvc.yaml").outs]


def test_repro_runs_every_stage_and_makes_exactly_the_declared_outputs(pipeline: dict) -> None:
    repo = pipeline["repo"]
    assert stages_run(pipeline["first"]) == STAGES
    declared = declared_outputs(repo)
    for path in declared:
        assert path.exists(), f"{path} was declared but not written"
        if path.is_dir():
            assert any(path.iterdir()), f"{path} is empty"
    project = set(run(repo, "git", "ls-tree", "-r", "--name-only", "HEAD~1").splitlines())  # before any run
    written = [p for folder in ("data", "models", "reports") for p in (repo / folder).rglob("*")
               if p.is_file() and p.name != ".gitignore"  # DVC writes the .gitignore files
               and str(p.relative_to(repo)) not in project]  # the project's own files (data/images/README.md)
    undeclared = [p for p in written if not any(p == out or out in p.parents for out in declared)]
    assert undeclared == [], f"written but not declared in dvc.yaml: {undeclared}"
    metrics = json.loads((pipeline["repo"] / "reports/evaluate/metrics.json").read_text())
    assert metrics["iwae_log_likelihood_bound"] < 0 and metrics["loss"] > 0


def result_files(repo: Path) -> dict[Path, int]:
    """Every file under data/, models/ and reports/ (DVC's .gitignore files aside), with its mtime."""
    return {p: p.stat().st_mtime_ns for folder in ("data", "models", "reports") for p in (repo / folder).rglob("*")
            if p.is_file() and p.name != ".gitignore"}


def test_each_stage_writes_only_its_own_declared_outputs(project: Path) -> None:
    """Each stage rerun alone (`dvc repro -s -f`) touches no file outside its own outs in dvc.yaml."""
    repo = project
    for stage in STAGES:
        if stage == "download":  # it keeps a dataset that verifies: make it fetch one file
            (repo / "data/raw/t10k-labels-idx1-ubyte").unlink()
        before = result_files(repo)
        run(repo, "dvc", "repro", "-s", "-f", stage)
        after = result_files(repo)
        touched = [p for p in after if before.get(p) != after[p]] + [p for p in before if p not in after]
        declared = [repo / out for out in read_stage(stage, repo / "dvc.yaml").outs]
        stray = [p for p in touched if not any(p == out or out in p.parents for out in declared)]
        assert stray == [], f"{stage} wrote outside its declared outputs: {stray}"
        assert bool(touched) == bool(declared), f"{stage} declares {declared} but wrote {touched}"


def test_second_repro_is_a_no_op(pipeline: dict) -> None:
    assert stages_run(pipeline["second"]) == []
    assert "Data and pipelines are up to date" in pipeline["second"]


def test_remote_round_trip_gives_a_teammate_every_result(project: Path, tmp_path: Path) -> None:
    repo = project
    run(repo, "dvc", "remote", "add", "-d", "teamshare", str(tmp_path / "remote"))
    run(repo, "git", "add", ".dvc/config")
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "remote")
    run(repo, "dvc", "push")
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    run(clone, "dvc", "pull")
    for path in declared_outputs(clone):
        assert path.exists(), f"{path} missing after dvc pull"
    assert "Data and pipelines are up to date" in run(clone, "dvc", "status")
    assert stages_run(run(clone, "dvc", "repro")) == []


@pytest.mark.parametrize("edit, error", [
    (lambda text: text.replace("lr: 0.001", "lr: -1.0"),
     "error: params.yaml: lr = -1.0 is not a finite number > 0; fix it in params.yaml"),
    (lambda text: text + "latent_dims: 8\n",  # a key no stage reads: before check-params, nothing said a word
     "error: params.yaml: unknown key 'latent_dims'; did you mean latent_dim?"),
])
def test_bad_params_fail_in_one_line_before_any_stage_touches_a_result(project: Path, edit, error: str) -> None:
    """check-params runs first whenever params.yaml changes, so DVC deletes nothing and trains nothing."""
    repo = project
    outputs = [p for folder in ("data", "models", "reports") for p in sorted((repo / folder).rglob("*")) if p.is_file()]
    before = [path.read_bytes() for path in outputs]
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(edit(params))
    try:
        output = run(repo, "dvc", "repro", fails=True)
    finally:
        (repo / "params.yaml").write_text(params)
    assert error in output
    assert stages_run(output) == ["check-params"]
    assert [path.read_bytes() for path in outputs] == before
    assert "Data and pipelines are up to date" in run(repo, "dvc", "status")


def test_exp_run_continuous_bernoulli_end_to_end(project: Path) -> None:
    repo = project
    output = run(repo, "dvc", "exp", "run", "-n", "cb", "-S", "likelihood=continuous_bernoulli", "-S", "num_epochs=1")
    assert stages_run(output) == AFTER_TRAIN
    model = torch.load(repo / "models/model.pt", weights_only=True)
    assert model["config"]["likelihood"] == "continuous_bernoulli"
    metrics = json.loads((repo / "reports/evaluate/metrics.json").read_text())
    # a density of grey pixels: its per-image log-likelihood is far above any Bernoulli number's
    assert metrics["iwae_log_likelihood_bound"] > 0 and math.isfinite(metrics["fd_samples"])
    shown = json.loads(run(repo, "dvc", "exp", "show", "--json"))
    assert "continuous_bernoulli" in json.dumps(shown)
    assert (repo / "reports/sample/prior_samples.png").exists()


def test_exp_run_discretized_logistic_end_to_end_and_bits_per_dim_beside_the_default(project: Path) -> None:
    """8-bit likelihood through every stage from train on; `dvc metrics diff` shows the bits per dimension as new
    keys beside the default run, which has none (absent, not a marker: `-` in `dvc metrics show`)."""
    repo = project
    output = run(repo, "dvc", "exp", "run", "-n", "dlogistic", "-S", "likelihood=discretized_logistic",
                 "-S", "num_epochs=1")
    assert stages_run(output) == AFTER_TRAIN
    model = torch.load(repo / "models/model.pt", weights_only=True)
    assert model["config"]["likelihood"] == "discretized_logistic"
    assert model["model"]["decoder.log_scale"].shape == (784,)
    diff = json.loads(run(repo, "dvc", "metrics", "diff", "--json"))["reports/evaluate/metrics.json"]
    for key in ("bits_per_dim", "iwae_bits_per_dim"):
        assert diff[key]["old"] is None and 0 < diff[key]["new"] < math.inf
    assert diff["iwae_bits_per_dim"]["new"] < diff["bits_per_dim"]["new"]
    assert "bits_per_dim" in run(repo, "dvc", "metrics", "show")
    assert (repo / "reports/sample/prior_samples.png").exists()


def test_exp_run_iwae_objective_end_to_end(project: Path) -> None:
    repo = project
    output = run(repo, "dvc", "exp", "run", "-n", "iwae3", "-S", "objective=iwae", "-S", "train_samples=3")
    assert stages_run(output) == AFTER_TRAIN
    train = json.loads((repo / "reports/train/metrics.json").read_text())
    assert math.isfinite(train["train_objective"]) and 0 < train["train_objective"] < 1000
    assert "train_objective" in (repo / "reports/train/history.csv").read_text().splitlines()[0]


@pytest.mark.parametrize("setting", ["prior=vampprior", "stochastic_layers=2"])
def test_exp_run_a_vampprior_or_a_second_stochastic_layer_end_to_end(project: Path, setting: str) -> None:
    """The two commands of docs/variants.md as written: every stage from train on, and `dvc metrics diff` shows them."""
    repo = project
    output = run(repo, "dvc", "exp", "run", "-S", setting)
    assert stages_run(output) == AFTER_TRAIN
    key, value = setting.split("=")
    assert str(torch.load(repo / "models/model.pt", weights_only=True)["config"][key]) == value
    diff = json.loads(run(repo, "dvc", "metrics", "diff", "--json"))["reports/evaluate/metrics.json"]
    assert diff["iwae_log_likelihood_bound"]["new"] != diff["iwae_log_likelihood_bound"]["old"]
    assert math.isfinite(diff["fd_samples"]["new"])
    assert ("active_units_lower" in diff) == (key == "stochastic_layers")


def test_plots_show_draws_every_plot_on_a_utf8_page_that_renders_offline(project: Path, tmp_path: Path) -> None:
    repo = project
    run(repo, sys.executable, "-m", "vae.runtime.plots_page")  # what `make setup` does
    assert "plots/page-offline.html" in (repo / ".dvc/config.local").read_text()
    run(repo, "dvc", "plots", "show", "-o", str(tmp_path / "plots"))
    page = (tmp_path / "plots" / "index.html").read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in page  # .dvc/plots/page.html, set in .dvc/config
    for title in ("Loss", "Reconstruction and KL", "KL per latent dimension",
                  "reports/latents/projections/"):
        assert title in page, f"plot {title!r} missing from dvc plots show"
    assert "dimension_number" in page  # .dvc/plots/kl_bars.json orders the bars by dimension
    # Vega, Vega-Lite and Vega-Embed are in the page itself: nothing is fetched from a CDN
    assert "<script src" not in page and "cdn.jsdelivr" not in page
    assert "vegaEmbed" in page and page.count("vegaEmbed(") >= 4


def test_the_explore_notebook_runs_on_the_pipelines_outputs(project: Path) -> None:
    """notebooks/explore.ipynb, executed as a user would open it (from notebooks/), must not rot."""
    import nbformat
    from nbclient import NotebookClient

    notebook = project / "notebooks" / "explore.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum(o.output_type == "display_data" and "image/png" in o.data for o in outputs) >= 6  # 3 files, 3 plots


def test_a_grid_shared_across_machines_through_git_and_a_dvc_remote(project: Path, tmp_path: Path) -> None:
    """Two clones ("machines") each run one experiment of a grid and push it; a third pulls and applies one.

    The two experiments are also the tests of what `-S latent_dim=3` and `-S seed=1` rerun and change: every stage
    from train on, never download, split or the classifier (`seed` is the training run's; the split and the
    sample-quality classifier follow `data_seed`)."""
    run(project, "dvc", "remote", "add", "-d", "store", str(tmp_path / "dvc-store"))
    run(project, "git", "add", ".dvc/config")
    run(project, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "shared DVC remote")
    run(project, "dvc", "push")
    run(tmp_path, "git", "clone", "-q", "--bare", str(project), str(tmp_path / "origin.git"))

    models = {}
    for machine, name, setting in (("a", "lat3", "latent_dim=3"), ("b", "seed1", "seed=1")):
        clone = tmp_path / machine
        run(tmp_path, "git", "clone", "-q", str(tmp_path / "origin.git"), str(clone))
        run(clone, "dvc", "pull")
        classifier = (clone / "models/classifier.pt").read_bytes()
        output = run(clone, "dvc", "exp", "run", "-n", name, "-S", setting)
        assert stages_run(output) == AFTER_TRAIN
        assert (clone / "models/classifier.pt").read_bytes() == classifier
        if name == "lat3":
            diff = json.loads(run(clone, "dvc", "metrics", "diff", "--json"))
            changed = diff["reports/evaluate/metrics.json"]
            assert changed["loss"]["new"] != changed["loss"]["old"]
            assert (clone / "reports/sample/traversals.png").exists()
            assert (clone / "reports/figures/latent_tsne.png").exists()
            assert not (clone / "reports/sample/manifold.png").exists()
        else:
            metrics = json.loads((clone / "reports/evaluate/metrics.json").read_text())
            assert {"fd_samples_latent_density", "sample_class_entropy_latent_density"} <= set(metrics)
            assert (clone / "reports/sample/latent_density_samples.png").exists()
        run(clone, "dvc", "exp", "push", "origin", name)
        models[name] = (clone / "models/model.pt").read_bytes()

    third = tmp_path / "c"
    run(tmp_path, "git", "clone", "-q", str(tmp_path / "origin.git"), str(third))
    run(third, "dvc", "exp", "pull", "origin", "--all-commits")
    rows = json.loads(run(third, "dvc", "exp", "show", "--json"))
    experiments = {exp["name"]: exp for row in rows for exp in (row.get("experiments") or [])}
    assert set(experiments) >= {"lat3", "seed1"}
    for name in ("lat3", "seed1"):
        metrics = experiments[name]["revs"][0]["data"]["metrics"]["reports/evaluate/metrics.json"]["data"]
        assert metrics["loss"] > 0 and "fd_samples" in metrics
    run(third, "dvc", "exp", "apply", "lat3")
    run(third, "dvc", "pull")
    assert (third / "models/model.pt").read_bytes() == models["lat3"]
    assert (third / "reports/sample/prior_samples.png").exists()
    assert stages_run(run(third, "dvc", "repro")) == []


def test_the_python_api_reads_any_revision_without_checking_it_out(project: Path) -> None:
    code = ("import vae\n"
            "print(vae.load_model(rev='HEAD').latent_dim, vae.load_metrics(rev='HEAD')['epoch'])\n"
            "try:\n    vae.load_model(rev='no-such-experiment')\nexcept vae.errors.UserError as err:\n    print(err)\n")
    lines = run(project, sys.executable, "-c", code).strip().splitlines()
    assert lines[0] == "2 1"  # the committed baseline: latent_dim 2, one epoch
    assert lines[-1] == ("this repository has no experiment, branch, tag or commit named 'no-such-experiment'; "
                         "pass rev= one that exists (`dvc exp list --all-commits` lists the experiments)")


def test_a_failed_download_leaves_the_verified_dataset_in_place(project: Path, tmp_path: Path) -> None:
    """`dvc repro -f -s download` that must fetch a file the mirror holds corrupt: one clear line, data/raw
    unchanged (the three files that verify in place stay; nothing is written)."""
    repo = project
    source = Path(os.environ.get(MIRROR_ENV, "")) / "mnist"
    if not source.is_dir():
        pytest.skip(f"needs {MIRROR_ENV} to be a folder")
    shutil.copytree(source, tmp_path / "mirror" / "mnist")
    (tmp_path / "mirror" / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not gzip")
    (repo / "data/raw/t10k-images-idx3-ubyte").unlink()
    before = {p.name: p.read_bytes() for p in (repo / "data/raw").iterdir()}
    output = run(repo, "dvc", "repro", "-f", "-s", "download", fails=True,
                 env={MIRROR_ENV: str(tmp_path / "mirror")})
    assert "error: could not get MNIST file t10k-images-idx3-ubyte from any source" in output
    assert "data/raw is unchanged" in output
    assert {p.name: p.read_bytes() for p in (repo / "data/raw").iterdir()} == before


def test_a_failed_stage_says_how_to_get_the_outputs_dvc_deleted_back(project: Path) -> None:
    repo = project
    before = {p: p.read_bytes() for p in (repo / "data/processed").iterdir()}
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("train_subset: 2000", "train_subset: 60000"))
    try:
        output = run(repo, "dvc", "repro", "split", fails=True)
    finally:
        (repo / "params.yaml").write_text(params)
    assert ("error: params.yaml: train_subset = 60000 but the training split has 54000 images; set it to at most "
            "54000, or 0 for all; DVC removed its last outputs before it ran, to get them back: "
            "`dvc checkout split`") in output
    run(repo, "dvc", "checkout", "split")
    assert {p: p.read_bytes() for p in (repo / "data/processed").iterdir()} == before


def wait_for_queue(repo: Path, timeout_s: float = 900) -> str:
    """Poll `dvc queue status` until nothing is queued or running; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = run(repo, "dvc", "queue", "status")
        if not any(state in status for state in ("Queued", "Running")):
            return status
        time.sleep(2)
    pytest.fail(f"the queue did not finish within {timeout_s} s:\n{status}")


def test_a_study_runs_as_named_experiments_and_its_report_matches_the_runs(project: Path) -> None:
    """`make study STUDY=smoke` queues 4 runs, `make report` summarizes them, a second `make study` queues none."""
    venv = Path(sys.executable).parent.parent
    make = ["make", "-o", f"{venv}/.installed", f"VENV={venv}", "STUDY=smoke"]
    queued = run(project, *make, "study")
    assert "4 of 4 runs queued" in queued
    status = wait_for_queue(project)
    assert "Failed" not in status, status
    run(project, *make, "report")
    record = pd.read_csv(project / "docs/results/smoke.csv")
    assert sorted(record["experiment"]) == sorted(f"smoke-mnist-{c}-s{s}" for c in ("notebook", "latent-3")
                                                  for s in (1, 2))
    assert set(record["latent_dim"]) == {2, 3} and record["cpu"].notna().all() and (record["threads"] == 1).all()
    report = (project / "docs/results/smoke.md").read_text()
    assert "**4 runs** of 4 planned; none missing." in report
    for config, part in record.groupby("configuration"):
        assert f"| MNIST | {config} | 2 | {part['loss'].mean():.2f} ± {part['loss'].std():.2f} |" in report
    assert (project / "docs/results/smoke.png").stat().st_size > 0
    assert "0 of 4 runs queued" in run(project, *make, "study")


def full_disk(pattern: str) -> dict[str, str]:
    """Environment under which the ``nth`` write of a file matching ``pattern`` (``glob#n``) fails with ENOSPC,
    as on a full disk (tests/faults/sitecustomize.py)."""
    return fault_env(VAE_TEST_ENOSPC_AT=pattern)


def one_error_line(output: str) -> str:
    """The stage's error line; asserts there is exactly one and no traceback."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, output
    return lines[0]


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_full_disk_in_split_leaves_no_half_output_and_the_printed_command_restores_it(project: Path) -> None:
    before = tree_bytes(project / "data/processed")
    output = run(project, "dvc", "repro", "-f", "-s", "split", fails=True, env=full_disk("*/test.npz"))
    line = one_error_line(output)
    assert re.match(r"error: no space left writing data/processed/test\.npz \(7\.\d MB to write, [\d.]+ [kM]B free\); "
                    r"free (space|at least [\d.]+ [kM]B) on that disk", line), line
    assert line.endswith("then rerun `dvc repro`; DVC removed its last outputs before it ran, to get them back: "
                         "`dvc checkout split`")
    assert not (project / "data/processed").exists()  # DVC deleted it; the stage left nothing behind
    assert not list((project / "data").glob(".processed*"))
    run(project, "dvc", "checkout", "split")  # the printed command, as printed
    assert tree_bytes(project / "data/processed") == before
    assert stages_run(run(project, "dvc", "repro")) == []


def test_a_full_disk_in_evaluate_restores_with_the_printed_git_command_then_repro_remakes_the_same(
        project: Path) -> None:
    before = tree_bytes(project / "reports/evaluate")
    output = run(project, "dvc", "repro", "-f", "-s", "evaluate", fails=True, env=full_disk("*kl_per_dim.csv*"))
    line = one_error_line(output)
    assert line.startswith("error: no space left writing reports/evaluate/kl_per_dim.csv (")
    hint = "`git checkout -- reports/evaluate/kl_per_dim.csv reports/evaluate/metrics.json`"
    assert line.endswith(f"to get them back: {hint}")
    assert tree_bytes(project / "reports/evaluate") == {}  # neither file: never one without the other
    run(project, *hint.strip("`").split())
    assert tree_bytes(project / "reports/evaluate") == before
    run(project, "dvc", "repro", "-f", "-s", "evaluate")  # disk freed: the same bytes as before the failure
    assert tree_bytes(project / "reports/evaluate") == before


def test_a_full_disk_at_an_epochs_checkpoint_keeps_the_last_one_and_a_rerun_ends_bit_identical(
        project: Path, tmp_path: Path) -> None:
    """Epoch 2's training state cannot be written: epoch 1's stays; freed, `dvc repro` resumes to the same bytes."""
    def two_epochs(repo: Path) -> None:
        params = (repo / "params.yaml").read_text()
        (repo / "params.yaml").write_text(params.replace("num_epochs: 1", "num_epochs: 2"))

    never_failed = tmp_path / "never-failed"
    shutil.copytree(project, never_failed, symlinks=True)
    two_epochs(never_failed)
    run(never_failed, "dvc", "repro", "train")

    two_epochs(project)
    output = run(project, "dvc", "repro", "train", fails=True, env=full_disk("*/train_state.pt#1"))
    assert one_error_line(output).startswith("error: no space left writing models/train_state.pt (")
    assert torch.load(project / "models/train_state.pt", weights_only=True)["epoch"] == 1  # the last good one
    assert "resuming from models/train_state.pt (epoch 1" in run(project, "dvc", "repro", "train")
    models = ("models/model.pt", "models/train_state.pt", "reports/train/metrics.json", "reports/train/history.csv")
    assert {m: (project / m).read_bytes() for m in models} == {m: (never_failed / m).read_bytes() for m in models}
