"""Whole params files drawn from the declared domains: each is refused by check-params in one line, or
every stage runs it to the end.

Single values are checked one key at a time; the rules that relate keys (split sizes against the
mixture's components, the kNN probe's neighbours, t-SNE's perplexity, the VampPrior's pseudo-inputs,
which keys mean something only with which others) are where a file passes and a stage then crashes.
Hypothesis draws files whose sizes straddle those limits, on a synthetic dataset of the real sizes
(60,000 and 10,000 images of noise), and runs every stage after download in this process, as
``python -m stages.<name>`` runs it, in a folder of its own. A stage that crashes fails the test
with its traceback; one that ends in an ``error:`` line does too (check-params should have said it).
A run whose training diverges (a non-finite loss at a large lr: no rule can foresee it) must end in
that one line. Derandomized, so CI draws the same files every run. One process pins its numerical libraries once,
as it starts: a file drawn with ``numerics: native`` runs under this process's portable pins (the
combination, not the arithmetic, is what is tested).
"""

import contextlib
import dataclasses
import io
import os
import runpy
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import stages  # noqa: F401  (imported once, here: a draw's params.yaml must not pin this process's numerics)
from vae import numerics
from vae.data.datasets import DATASETS, FILES
from vae.data.idx import format_idx
from vae.params import (
    ACTIVATION_NAMES,
    ARCHITECTURES,
    IWAE_EPOCHS,
    LIKELIHOOD_NAMES,
    LR_SCHEDULES,
    OBJECTIVES,
    PRECISIONS,
    PRIORS,
    PSEUDO_INPUT_INITS,
    TEST_SET_SIZE,
    TRAIN_SET_SIZE,
    Params,
    default,
)
from vae.runtime.dvc_yaml import read_stage, stage_names

pytestmark = pytest.mark.e2e  # runs every stage (in this process)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = 12  # about half run every stage


def sometimes(usual: st.SearchStrategy, unusual: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly ``usual``, about one draw in ten ``unusual`` (Hypothesis favours an integer range's ends: not 0)."""
    return st.integers(0, 99).flatmap(lambda i: unusual if i % 10 == 7 else usual)


def only_with(allowed: bool, default: object, values: st.SearchStrategy) -> st.SearchStrategy:
    """A key that means something only with another's value: any of ``values`` where it does (``allowed``),
    else mostly its ``default`` and now and then another value, which check-params must refuse."""
    return values if allowed else sometimes(st.just(default), values)


@st.composite
def split_sizes(draw: st.DrawFn) -> dict[str, object]:
    """val_fraction and train_subset: a small training subset, or the whole split left by a large val_fraction
    (both a few hundred images at most, so that every stage takes seconds)."""
    if draw(st.booleans()):
        return {"train_subset": draw(st.integers(1, 300)), "val_fraction": draw(st.floats(1e-5, 0.5))}
    return {"train_subset": 0, "val_fraction": draw(st.floats(1 - 300 / TRAIN_SET_SIZE, 1 - 4 / TRAIN_SET_SIZE))}


@st.composite
def params_files(draw: st.DrawFn) -> dict[str, object]:
    """A whole params.yaml: every key of vae.params' rules, each from its declared domain, the keys that
    govern others drawn first. Sizes straddle the limits that relate keys (a few hundred training images
    against up to 400 mixture components or pseudo-inputs, perplexities against t-SNE subsets)."""
    mlp = draw(st.sampled_from(ARCHITECTURES)) == "mlp"
    elbo = draw(st.sampled_from(OBJECTIVES)) == "elbo"
    native = draw(st.booleans())
    vampprior = draw(st.sampled_from(PRIORS)) == "vampprior"
    two_layers = draw(only_with(mlp, 1, st.sampled_from([1, 2]))) == 2
    schedule = draw(st.sampled_from(LR_SCHEDULES))
    num_epochs = draw(st.integers(1, 2))
    tsne_subset = draw(st.integers(2, 200))
    return {
        **draw(split_sizes()),
        "architecture": "mlp" if mlp else "conv",
        "objective": "elbo" if elbo else "iwae",
        "numerics": "native" if native else "portable",
        "prior": "vampprior" if vampprior else "standard",
        "stochastic_layers": 2 if two_layers else 1,
        "lr_schedule": schedule,
        "num_epochs": num_epochs,
        "tsne_subset": tsne_subset,
        "dataset_name": draw(st.sampled_from(sorted(DATASETS))),
        "batch_size": draw(st.integers(1, 256)),
        "lr": draw(st.floats(1e-5, 1e-2)),
        "latent_dim": draw(st.integers(1, 4)),
        "hidden_dim": draw(st.integers(1, 16)),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "data_seed": draw(st.integers(0, 2**32 - 1)),
        "device": draw(st.sampled_from(["cpu", "auto"])),
        "n_samples": draw(st.integers(1, 16)),
        "latent_density_components": draw(st.one_of(st.integers(1, 20), st.integers(1, 400))),
        "iwae_k": draw(st.integers(1, 3)),
        "fd_images": draw(st.integers(100, TEST_SET_SIZE)),
        "tsne_perplexity": draw(sometimes(st.floats(0.5, tsne_subset - 0.5), st.floats(tsne_subset, 2 * tsne_subset))),
        "classifier_epochs": 1,
        "classifier_batch_size": draw(st.integers(1, 512)),
        "classifier_lr": draw(st.floats(1e-5, 1e-1)),
        "likelihood": draw(st.sampled_from(LIKELIHOOD_NAMES)),
        "beta": draw(only_with(elbo, 1.0, st.floats(0, 2))),
        "kl_warmup_epochs": draw(only_with(elbo, 0, sometimes(st.integers(0, num_epochs), st.just(num_epochs + 1)))),
        "hidden_layers": draw(only_with(mlp, default("hidden_layers"), st.integers(1, 3))),
        "activation": draw(st.sampled_from(ACTIVATION_NAMES) if mlp
                           else only_with(False, "relu", st.sampled_from(ACTIVATION_NAMES))),
        "adam_eps": draw(st.floats(1e-10, 1e-4)),
        "lr_schedule_epochs": draw(only_with(schedule != "constant", IWAE_EPOCHS, st.integers(1, 4))),
        "output_bias_init": draw(only_with(mlp, "default", st.sampled_from(["default", "train_mean"]))),
        "save_every": draw(st.integers(1, 3)),
        "train_samples": draw(st.integers(1, 3)),
        "precision": draw(only_with(native, "32-true", st.sampled_from(PRECISIONS))),
        "threads": draw(st.integers(1, 2)),
        "pseudo_inputs": draw(only_with(vampprior, default("pseudo_inputs"),
                                         st.one_of(st.integers(1, 20), st.integers(1, 400)))),
        "pseudo_inputs_init": draw(only_with(vampprior, "random", st.sampled_from(PSEUDO_INPUT_INITS))),
        "lower_latent_dim": draw(only_with(two_layers, default("lower_latent_dim"), st.integers(1, 4))),
        # a folder's keys, drawn with the IDX datasets only (refused off their defaults; tests/test_folder*.py
        # run folders)
        "image_folder": draw(only_with(False, default("image_folder"), st.just("data/photos"))),
        "image_size": draw(only_with(False, default("image_size"), st.sampled_from([32, 64]))),
        "channels": draw(only_with(False, default("channels"), st.just(3))),
        "test_fraction": draw(only_with(False, default("test_fraction"), st.floats(0.05, 0.5))),
        "undecodable": draw(only_with(False, default("undecodable"), st.just("skip"))),
    }


@pytest.fixture(scope="module")
def raw_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """IDX files of the real datasets' sizes, holding noise: the split stage reads them as it reads MNIST's."""
    raw = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(0)
    for name, n in ((FILES[0], TRAIN_SET_SIZE), (FILES[2], TEST_SET_SIZE)):
        (raw / name).write_bytes(format_idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)))
    for name, n in ((FILES[1], TRAIN_SET_SIZE), (FILES[3], TEST_SET_SIZE)):
        (raw / name).write_bytes(format_idx(rng.integers(0, 10, n, dtype=np.uint8)))
    return raw


@contextlib.contextmanager
def stage_process(folder: Path) -> Iterator[io.StringIO]:
    """This process as a stage's: in ``folder``, its stderr captured; what a stage sets is put back after."""
    saved = (Path.cwd(), sys.argv, signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    stderr = io.StringIO()
    os.chdir(folder)
    try:
        with contextlib.redirect_stderr(stderr), numerics.torch_settings_kept():
            yield stderr
    finally:
        os.chdir(saved[0])
        sys.argv = saved[1]
        signal.signal(signal.SIGINT, saved[2])
        signal.signal(signal.SIGTERM, saved[3])
        torch.set_flush_denormal(False)  # run_stage flushes subnormals; Hypothesis's own floats need them


def run_stage_here(folder: Path, name: str) -> tuple[int, str]:
    """Run stage ``name`` as dvc.yaml's command runs it, in this process: its exit code and stderr."""
    command = shlex.split(read_stage(name, folder / "dvc.yaml").cmd)
    assert command[:2] == ["python", "-m"], command
    with stage_process(folder) as stderr:
        sys.argv = [command[2], *command[3:]]
        try:
            runpy.run_module(command[2], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            code = exit_.code or 0
    return code, stderr.getvalue()


def test_a_params_file_is_refused_in_one_line_or_runs_every_stage(raw_data: Path,
                                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    ran = []  # the drawn files every stage ran: a test whose every draw is refused tests no combination

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(params=params_files())
    def refused_or_runs(params: dict) -> None:
        assert set(params) == {field.name for field in dataclasses.fields(Params)}  # a new param is drawn too
        folder = tmp_path_factory.mktemp("project")
        (folder / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
        (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for code in ("stages", "vae"):  # the train stage keys its saved state on its deps in dvc.yaml
            (folder / code).symlink_to(REPO / code)
        (folder / "data").mkdir()
        (folder / "data/raw").symlink_to(raw_data)
        code, err = run_stage_here(folder, "check-params")
        event("refused by check-params" if code else "ran every stage")
        if code:
            assert code == 1 and len(err.strip().splitlines()) == 1 and err.startswith("error: params.yaml: "), err
            return
        for name in stage_names(folder / "dvc.yaml"):
            if name not in ("check-params", "download"):  # download: data/raw is given
                code, err = run_stage_here(folder, name)
                if code == 1 and err.count("error: ") == 1 and "non-finite" in err:
                    return  # training diverged (a large lr): one line that says so, as a user would see it
                assert code == 0, f"check-params passed this file, then {name} failed:\n{err}\n{params}"
        ran.append(params)

    refused_or_runs()
    assert ran, "check-params refused every drawn file: the draws test no combination that runs"
