"""Study files, their validation, the report's statistics and its durable CSV (no DVC runs here;
the end-to-end smoke study is in test_pipeline.py)."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vae.errors import UserError
from vae.studies.experiments import Experiment, parse_exp_show, same_params
from vae.studies.report import latest, merge, paired_interval, summary, welch_interval
from vae.studies.spec import load_study, select

REPO = Path(__file__).resolve().parent.parent
STUDIES = REPO / "studies"


@pytest.mark.parametrize("name, runs", [("smoke", 4), ("latent-sizes", 12), ("variants", 42), ("iwae", 9),
                                        ("paper", 1)])
def test_the_committed_studies_are_valid_and_plan_distinct_named_runs(name: str, runs: int) -> None:
    study = load_study(name, STUDIES, REPO / "params.yaml")
    planned = study.runs()
    assert len(planned) == runs and len({r.name for r in planned}) == runs
    assert all(r.name.startswith(f"{name}-") and r.name.endswith(f"-s{r.seed}") for r in planned)
    assert all(r.overrides["seed"] == r.seed and r.overrides["dataset_name"] == r.dataset for r in planned)


def test_run_names_and_overrides_say_what_the_run_is() -> None:
    study = load_study("variants", STUDIES, REPO / "params.yaml")
    run = next(r for r in study.runs() if r.configuration == "beta-4" and r.dataset == "FashionMNIST" and r.seed == 2)
    assert run.name == "variants-fashion-mnist-beta-4-s2"
    assert run.set_params() == ["-S", "latent_dim=16", "-S", "beta=4.0", "-S", "dataset_name=FashionMNIST",
                                "-S", "seed=2"]
    assert study.varied() == ["beta", "kl_warmup_epochs", "likelihood", "architecture"]


def test_a_study_runs_in_parts_by_patterns_of_run_names() -> None:
    study = load_study("variants", STUDIES, REPO / "params.yaml")
    assert len(select(study, [])) == 42
    part = select(study, ["variants-fashion-mnist-conv-*", "variants-mnist-beta-4-s2"])
    assert part == {*(f"variants-fashion-mnist-conv-s{seed}" for seed in (1, 2, 3)), "variants-mnist-beta-4-s2"}
    with pytest.raises(UserError, match=r"^no run of study variants matches 'variants-fashionmnist-\*'; its runs "
                                        r"are named like variants-mnist-notebook-s1 \(STUDY-DATASET-CONFIGURATION-"):
        select(study, ["variants-fashionmnist-*"])


def write_study(tmp_path: Path, text: str) -> Path:
    (tmp_path / "studies").mkdir(exist_ok=True)
    (tmp_path / "studies" / "bad.yaml").write_text(text)
    return tmp_path / "studies"


GOOD = "datasets: [MNIST]\nseeds: [1, 2]\nconfigurations:\n  notebook: {}\n"


@pytest.mark.parametrize("text, message", [
    (GOOD + "seed: [3]\n", "studies/bad.yaml: unknown key 'seed'; did you mean seeds?"),
    (GOOD + "  big: {latent_dims: 8}\n", "unknown key 'latent_dims'; did you mean latent_dim?"),
    (GOOD + "  neg: {beta: -1.0}\n", "configuration 'neg', MNIST, seed 1): beta = -1.0 is not a finite number >= 0"),
    (GOOD + "  conv: {architecture: conv, hidden_layers: 3}\n", "hidden_layers = 3 applies to architecture: mlp only"),
    (GOOD + "  s: {seed: 3}\n", "seed is set by s; list it under seeds instead"),
    (GOOD + "baseline: beta\n", "baseline 'beta' is not one of the configurations (notebook)"),
    (GOOD.replace("[MNIST]", "[MNIST, CIFAR]"), "dataset 'CIFAR' is not one of MNIST, FashionMNIST"),
    (GOOD.replace("[1, 2]", "[1, 1]"), "seeds must be distinct integers >= 0, got [1, 1]"),
    (GOOD + "  Beta.4: {beta: 4.0}\n", "configuration name 'Beta.4' must be lower-case letters, digits and dashes"),
    ("datasets: [MNIST]\nconfigurations: {a: {}}\n", "seeds is missing or empty"),
    ("datasets: [MNIST\n", "not valid YAML"),
])
def test_a_bad_study_file_is_refused_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    studies = write_study(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_study("bad", studies, REPO / "params.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_unknown_study_names_the_studies_that_exist() -> None:
    with pytest.raises(UserError, match=r"no study named 'variant' \(no .*variant.yaml\); the studies are: "
                                        r"iwae, latent-sizes, paper, smoke, variants"):
        load_study("variant", STUDIES, REPO / "params.yaml")


def test_welch_interval_is_scipys() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(100, 0.3, 3), rng.normal(101, 0.8, 4)
    d, lo, hi = welch_interval(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d == pytest.approx(a.mean() - b.mean()) and (lo, hi) == pytest.approx((ci.low, ci.high))
    assert math.isnan(welch_interval(a[:1], b)[1])  # one run: no interval


def test_paired_interval_is_scipys() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(50, 5, 4)
    b = a + rng.normal(20, 2, 4)
    d, lo, hi = paired_interval(a, b)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert d == pytest.approx((a - b).mean()) and (lo, hi) == pytest.approx((ci.low, ci.high))


def row(name: str, commit: str, loss: float, configuration: str = "notebook", seed: int = 1) -> dict:
    return {"experiment": name, "configuration": configuration, "dataset": "MNIST", "seed": seed,
            "commit": commit, "code": "c0de", "cpu": "CPU", "threads": 1, "torch": "2", "loss": loss}


def test_merge_keeps_earlier_rows_and_replaces_a_run_at_the_same_commit() -> None:
    old = pd.DataFrame([row("a", "c1", 1.0), row("b", "c1", 2.0)])
    merged = merge(old, [row("a", "c1", 1.5), row("a", "c2", 3.0), row("c", "c2", 4.0)])
    assert merged[["experiment", "commit", "loss"]].values.tolist() == [
        ["b", "c1", 2.0], ["a", "c1", 1.5], ["a", "c2", 3.0], ["c", "c2", 4.0]]
    assert latest(merged).set_index("experiment")["loss"].to_dict() == {"b": 2.0, "a": 3.0, "c": 4.0}
    assert merge(old, []).equals(old)


def test_summary_reports_means_intervals_and_the_missing_runs(tmp_path: Path) -> None:
    studies = write_study(tmp_path, "datasets: [MNIST]\nseeds: [1, 2, 3]\nconfigurations:\n  notebook: {}\n"
                                    "  beta-4: {beta: 4.0}\nbaseline: notebook\nmetrics: [loss]\n")
    study = load_study("bad", studies, REPO / "params.yaml")
    runs = pd.DataFrame([row(f"bad-mnist-notebook-s{s}", "c1", v, "notebook", s) for s, v in ((1, 100.0), (2, 100.5),
                                                                                              (3, 99.5))]
                        + [row(f"bad-mnist-beta-4-s{s}", "c1", v, "beta-4", s) for s, v in ((1, 110.0), (2, 111.0))])
    text = summary(study, runs, {"bad-mnist-beta-4-s3": "failed"})
    assert "**5 runs** of 6 planned; missing: bad-mnist-beta-4-s3 (failed)." in text
    assert "| MNIST | notebook | 3 | 100.00 ± 0.50 |" in text
    assert "| MNIST | beta-4 | 2 | 110.50 ± 0.71 |" in text
    d, lo, hi = welch_interval(np.array([110.0, 111.0]), np.array([100.0, 100.5, 99.5]))
    assert f"| MNIST | beta-4 | **{d:.2f} [{lo:.2f}, {hi:.2f}]** |" in text  # excludes zero: bold
    assert "published" not in text


def test_summary_sets_the_published_numbers_and_differences_beside_the_studys(tmp_path: Path) -> None:
    studies = write_study(tmp_path, "datasets: [MNIST]\nseeds: [1, 2, 3]\nconfigurations:\n  notebook: {}\n"
                                    "  beta-4: {beta: 4.0}\nbaseline: notebook\nmetrics: [loss]\npublished:\n"
                                    "  source: A paper, Table 2\n  MNIST:\n    notebook: {loss: 99.0}\n"
                                    "    beta-4: {loss: 109.0}\n")
    study = load_study("bad", studies, REPO / "params.yaml")
    runs = pd.DataFrame([row(f"bad-mnist-notebook-s{s}", "c1", v, "notebook", s) for s, v in ((1, 100.0), (2, 100.5),
                                                                                              (3, 99.5))]
                        + [row(f"bad-mnist-beta-4-s{s}", "c1", v, "beta-4", s) for s, v in ((1, 110.0), (2, 111.0),
                                                                                            (3, 110.5))])
    text = summary(study, runs, {})
    assert "## Beside the published numbers: A paper, Table 2" in text
    assert "| MNIST | notebook | loss | 3 | 100.00 ± 0.50 | 99 |  |  |  |" in text
    d, lo, hi = welch_interval(np.array([110.0, 111.0, 110.5]), np.array([100.0, 100.5, 99.5]))
    assert lo < 10.0 < hi  # so the paper's +10.00 lies inside
    assert f"| MNIST | beta-4 | loss | 3 | 110.50 ± 0.50 | 109 | **{d:.2f} [{lo:.2f}, {hi:.2f}]** | +10.00 | yes |" \
        in text


def test_without_a_baseline_the_published_numbers_get_the_studys_difference_to_them(tmp_path: Path) -> None:
    studies = write_study(tmp_path, "datasets: [MNIST]\nseeds: [1]\nconfigurations:\n  notebook: {}\n"
                                    "metrics: [loss]\npublished:\n  source: A paper, Table 2\n  MNIST:\n"
                                    "    notebook: {loss: 99.0}\n")
    study = load_study("bad", studies, REPO / "params.yaml")
    text = summary(study, pd.DataFrame([row("bad-mnist-notebook-s1", "c1", 100.25, "notebook", 1)]), {})
    assert "**1 run** of 1 planned; none missing." in text
    assert "| dataset | configuration | metric | n | this study | published | this study − published |" in text
    assert "| MNIST | notebook | loss | 1 | 100.25 | 99 | +1.25 |" in text
    assert "None" not in text


@pytest.mark.parametrize("published, message", [
    ("  MNIST:\n    notebook: {loss: 1.0}\n", "published needs a source"),
    ("  source: P\n  CIFAR:\n    notebook: {loss: 1.0}\n", "published: 'CIFAR' is not one of the study's datasets"),
    ("  source: P\n  MNIST:\n    beta: {loss: 1.0}\n", "published: MNIST: 'beta' is not one of the configurations"),
    ("  source: P\n  MNIST:\n    notebook: {los: 1.0}\n", "published: MNIST: notebook: los: 1.0 must be a number "
                                                           "for one of the study's metrics (loss)"),
])
def test_bad_published_numbers_are_refused_in_one_line(tmp_path: Path, published: str, message: str) -> None:
    studies = write_study(tmp_path, GOOD + "metrics: [loss]\npublished:\n" + published)
    with pytest.raises(UserError) as err:
        load_study("bad", studies, REPO / "params.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_parse_exp_show_reads_names_states_params_and_every_metrics_file() -> None:
    shown = [{"rev": "workspace", "name": None, "data": {}, "error": None, "experiments": None},
             {"rev": "abc123", "name": "main", "data": {}, "error": None, "experiments": [
                 {"name": "s-mnist-a-s1", "executor": {"state": "success"}, "revs": [
                     {"rev": "e1", "name": "s-mnist-a-s1", "data": {
                         "params": {"params.yaml": {"data": {"seed": 1, "beta": 4.0}}},
                         "metrics": {"reports/train/metrics.json": {"data": {"val_loss": 1.0}},
                                     "reports/evaluate/metrics.json": {"data": {"loss": 2.0}}}}}]},
                 {"name": "s-mnist-a-s2", "executor": {"state": "queued"}, "revs": [
                     {"rev": "q1", "name": "s-mnist-a-s2", "data": None}]}]}]
    found = parse_exp_show(json.loads(json.dumps(shown)))
    assert found == [Experiment("s-mnist-a-s1", "e1", "abc123", "success", {"seed": 1, "beta": 4.0},
                                {"val_loss": 1.0, "loss": 2.0}),
                     Experiment("s-mnist-a-s2", "", "abc123", "queued", {}, {})]


def test_same_params_compares_every_override() -> None:
    run = load_study("variants", STUDIES, REPO / "params.yaml").runs()[3]  # beta 0.5, seed 1
    assert same_params(run, {"latent_dim": 16, "beta": 0.5, "dataset_name": "MNIST", "seed": 1, "lr": 0.001})
    assert not same_params(run, {"latent_dim": 16, "beta": 4.0, "dataset_name": "MNIST", "seed": 1})
