"""Study files, their validation, the report's statistics and its durable CSV (no DVC runs here;
the end-to-end smoke study is in test_pipeline.py)."""

import json
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vae.errors import UserError
from vae.studies import experiments as experiments_module
from vae.studies.experiments import Experiment, baselines, oldest_first, parse_exp_show, same_params
from vae.studies.figure import figure
from vae.studies.record import latest, merge
from vae.studies.spec import Study, load_study, select
from vae.studies.statistics import welch_interval
from vae.studies.summary import summary

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
    (GOOD + "metrics: [loss, fd_sample]\n",
     "studies/bad.yaml: metrics: 'fd_sample' is not a metric any stage writes; did you mean fd_samples?"),
    (GOOD + "compare: [[fd_samples_latent_densty, fd_samples]]\n",
     "compare: 'fd_samples_latent_densty' is not a metric any stage writes; did you mean fd_samples_latent_density?"),
    (GOOD + "metrics: [zzz]\n", "metrics: 'zzz' is not a metric any stage writes; see KNOWN_METRICS in "
                                 "vae/studies/spec.py"),
])
def test_a_bad_study_file_is_refused_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    studies = write_study(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_study("bad", studies, REPO / "params.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_known_metrics_are_those_the_stages_write() -> None:
    """The vocabulary of `metrics:` and `compare:` against the committed metrics files and the code's names."""
    from vae.likelihoods import BITS_METRICS, LIKELIHOODS
    from vae.studies.spec import KNOWN_METRICS
    from vae.training import HISTORY_COLUMNS, OBJECTIVE_COLUMN

    written = {key for stage in ("train", "classifier", "evaluate")
               for key in json.loads((REPO / f"reports/{stage}/metrics.json").read_text())}
    optional = {OBJECTIVE_COLUMN, *HISTORY_COLUMNS, "active_units_lower", *BITS_METRICS} | {  # two layers; discrete
        lik.test_nll_metric for lik in LIKELIHOODS.values() if lik.test_nll_metric}
    assert set(KNOWN_METRICS) == written | optional and len(KNOWN_METRICS) == len(set(KNOWN_METRICS))


def test_an_unknown_study_names_the_studies_that_exist() -> None:
    names = ", ".join(sorted(path.stem for path in STUDIES.glob("*.yaml")))
    assert names.startswith("bits, iwae, latent-sizes, paper")
    with pytest.raises(UserError, match=rf"no study named 'variant' \(no .*variant.yaml\); the studies are: {names}$"):
        load_study("variant", STUDIES, REPO / "params.yaml")


def test_welch_interval_is_the_welch_satterthwaite_t_interval() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(100, 0.3, 3), rng.normal(101, 0.8, 4)
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 4
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    d = a.mean() - b.mean()
    assert welch_interval(a, b) == pytest.approx((d, d - half, d + half))
    assert math.isnan(welch_interval(a[:1], b)[1])  # one run: no interval
    assert welch_interval(np.array([16.0, 16.0]), np.array([11.0, 11.0, 11.0])) == (5.0, 5.0, 5.0)  # no spread
    assert welch_interval(np.full(3, 0.7), np.full(3, 0.7)) == (0.0, 0.0, 0.0)  # not scipy's ±3e-16


def row(name: str, commit: str, loss: float, configuration: str = "notebook", seed: int = 1, **more: object) -> dict:
    return {"experiment": name, "configuration": configuration, "dataset": "MNIST", "seed": seed,
            "commit": commit, "code": "c0de", "cpu": "CPU", "threads": 1, "torch": "2", "loss": loss, **more}


def test_merge_keeps_earlier_rows_and_replaces_a_run_at_the_same_commit_in_its_place() -> None:
    old = pd.DataFrame([row("a", "c1", 1.0), row("b", "c1", 2.0), row("a", "c2", 3.0)])
    merged = merge(old, [row("a", "c1", 1.5), row("c", "c2", 4.0)])
    assert merged[["experiment", "commit", "loss"]].values.tolist() == [
        ["a", "c1", 1.5], ["b", "c1", 2.0], ["a", "c2", 3.0], ["c", "c2", 4.0]]
    # the run's row of the newer commit c2 stays the latest, though c1's was recorded again
    assert latest(merged).set_index("experiment")["loss"].to_dict() == {"a": 3.0, "b": 2.0, "c": 4.0}
    assert merge(old, []).equals(old)


def git(repo: Path, *args: str, date: int = 1_700_000_000) -> str:
    """Run git in ``repo`` as a fixed author at a fixed date (seconds since the epoch), so hashes are the same."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_AUTHOR_DATE": f"@{date} +0000", "GIT_COMMITTER_DATE": f"@{date} +0000"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_baselines_are_ordered_by_commit_date_not_by_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git(tmp_path, "init", "-q")
    tree = git(tmp_path, "write-tree")
    for i in range(100):  # an older commit whose hash sorts after its newer child's: sorting by hash fails
        old = git(tmp_path, "commit-tree", tree, "-m", f"old {i}", date=1_700_000_000)
        new = git(tmp_path, "commit-tree", tree, "-p", old, "-m", "new", date=1_700_086_400)
        if old > new:
            break
    git(tmp_path, "update-ref", "HEAD", new)
    for commit in (old, new):
        git(tmp_path, "update-ref", f"refs/exps/{commit[:2]}/{commit[2:]}/s-mnist-a-s1", commit)
    monkeypatch.chdir(tmp_path)
    assert baselines() == [old, new]
    assert oldest_first({"b": 5, "a": 5, "c": 1}) == ["c", "a", "b"]


def test_the_experiments_of_one_run_at_two_commits_come_oldest_commit_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """DVC lists the commits in an order of its own; the report keeps each run's last row, so the newest commit's
    experiment must come last."""
    def shown(commit: str, loss: float) -> dict:
        return {"rev": commit, "experiments": [{"executor": {"state": "success"}, "revs": [
            {"rev": f"e{commit}", "name": "s-mnist-a-s1",
             "data": {"metrics": {"m.json": {"data": {"loss": loss}}}}}]}]}
    monkeypatch.setattr(experiments_module, "baselines", lambda: ["c-old", "c-new"])
    monkeypatch.setattr(experiments_module, "command",
                        lambda *args: json.dumps([shown("c-new", 2.0), shown("c-old", 1.0)]))
    found = experiments_module.experiments(all_commits=True)
    assert [(exp.baseline, exp.metrics["loss"]) for exp in found] == [("c-old", 1.0), ("c-new", 2.0)]
    rows = [row(exp.name, exp.baseline, exp.metrics["loss"]) for exp in found]
    assert latest(merge(pd.DataFrame(), rows))["commit"].tolist() == ["c-new"]


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


def section(text: str) -> str:
    """The report's "What the intervals say" section, up to the figure."""
    return text.split("## What the intervals say\n", 1)[1].split("\n![", 1)[0]


INTERVAL = re.compile(r"-?\d+\.\d+ \[-?\d+\.\d+, -?\d+\.\d+\]")


def variants_runs(study_text: str, tmp_path: Path) -> tuple[object, pd.DataFrame]:
    """A study of a baseline and three configurations on MNIST, three seeds each: beta-4's loss 10 nats higher,
    beta-0p5's within the noise, cb trained with another likelihood; active_units the same in every seed."""
    study = load_study("bad", write_study(tmp_path, study_text), REPO / "params.yaml")
    values = {"notebook": ([100.0, 100.5, 99.5], 11, [50.0, 51.0, 52.0], "bernoulli"),
              "beta-4": ([110.0, 111.0, 110.5], 6, [60.0, 58.0, 59.0], "bernoulli"),
              "beta-0p5": ([100.2, 99.0, 101.0], 11, [50.5, 52.5, 49.0], "bernoulli"),
              "cb": ([-5000.0, -5010.0, -4990.0], 16, [80.0, 82.0, 81.0], "continuous_bernoulli")}
    runs = pd.DataFrame([row(f"bad-mnist-{c}-s{s}", "c1", loss[s - 1], c, s, active_units=units,
                             fd_samples=fd[s - 1], fd_samples_latent_density=fd[s - 1] - s, likelihood=likelihood)
                         for c, (loss, units, fd, likelihood) in values.items() for s in (1, 2, 3)])
    return study, runs


VARIANTS = ("datasets: [MNIST]\nseeds: [1, 2, 3]\nconfigurations:\n  notebook: {}\n  beta-4: {beta: 4.0}\n"
            "  beta-0p5: {beta: 0.5}\n  cb: {likelihood: continuous_bernoulli}\nbaseline: notebook\n"
            "metrics: [loss, active_units, fd_samples]\ncompare: [[fd_samples_latent_density, fd_samples]]\n")


def test_the_report_says_in_words_which_differences_the_intervals_resolve(tmp_path: Path) -> None:
    study, runs = variants_runs(VARIANTS, tmp_path)
    text = summary(study, runs, {})
    said = section(text)
    loss = welch_interval(np.array([110.0, 111.0, 110.5]), np.array([100.0, 100.5, 99.5]))
    fd = welch_interval(np.array([60.0, 58.0, 59.0]), np.array([50.0, 51.0, 52.0]))
    assert (f"- MNIST, beta-4: loss higher ({loss[0]:.2f} [{loss[1]:.2f}, {loss[2]:.2f}]); "
            f"fd_samples higher ({fd[0]:.2f} [{fd[1]:.2f}, {fd[2]:.2f}]).") in said
    assert "- MNIST, cb: fd_samples higher (" in said
    assert "- Within the noise (the interval contains zero): MNIST beta-0p5 loss, fd_samples." in said
    assert ("- No spread (the runs' values do not vary, so there is no interval): MNIST beta-4 "
            "active_units -5.00; MNIST beta-0p5 active_units 0.00; MNIST cb active_units 5.00.") in said
    assert ("- Not compared (likelihood metrics of a model with another likelihood than `notebook`'s, so on "
            "another scale): MNIST cb loss.") in said
    assert "- MNIST, beta-0p5:" not in said and "- MNIST, cb: loss" not in said
    # every interval the list quotes is one the tables print
    quoted = INTERVAL.findall(said)
    assert len(quoted) == 3 and all(q in text.replace(said, "") for q in quoted)


def test_a_difference_without_spread_is_no_bold_zero_width_interval(tmp_path: Path) -> None:
    study, runs = variants_runs(VARIANTS, tmp_path)
    text = summary(study, runs, {})
    assert "| MNIST | beta-4 | **10.50 [9.37, 11.63]** | -5.00 (no spread) | **8.00 [5.73, 10.27]** |" in text
    assert "| 5.00 (no spread) |" in text and "[5.00, 5.00]" not in text and "[-5.00, -5.00]" not in text
    assert "No spread: every run of both gave the same value, so there is no interval." in text


def test_a_metric_one_side_does_not_report_is_not_defined_not_one_run(tmp_path: Path) -> None:
    """A one-layer model has no active_units_lower: its differences are "not defined", never "n = 1", in the
    tables, the words and the figure, and the means' table prints no "- ± -"."""
    study = load_study("bad", write_study(tmp_path, "datasets: [MNIST]\nseeds: [1, 2, 3]\nconfigurations:\n"
                                          "  standard: {}\n  two-layers: {stochastic_layers: 2}\n"
                                          "  two-layers-b: {stochastic_layers: 2, beta: 2.0}\n"
                                          "baseline: {two-layers: standard, two-layers-b: two-layers}\n"
                                          "metrics: [loss, active_units_lower]\n"), REPO / "params.yaml")
    lower = {"standard": [math.nan] * 3, "two-layers": [30.0, 32.0, 31.0], "two-layers-b": [20.0, 22.0, 21.0]}
    runs = pd.DataFrame([row(f"bad-mnist-{c}-s{s}", "c1", 100.0 + s, c, s, active_units_lower=lower[c][s - 1])
                         for c in lower for s in (1, 2, 3)])
    text = summary(study, runs, {})
    assert "| MNIST | standard | 3 | 102.00 ± 1.00 | - |" in text
    assert "| MNIST | two-layers − standard | 0.00 [-2.27, 2.27] | - (not defined) |" in text
    assert "| MNIST | two-layers-b − two-layers | 0.00 [-2.27, 2.27] | **-10.00 [-12.27, -7.73]** |" in text
    said = section(text)
    assert ("- Not defined (the runs of a side do not report the metric): MNIST two-layers − standard "
            "active_units_lower.") in said
    assert "n = 1" not in text
    _, lower_axis = figure(study, runs).axes  # the figure marks it and draws no point
    assert [t.get_text() for t in lower_axis.texts] == ["not defined"] and len(lower_axis.containers) == 1


def test_the_report_says_which_paired_differences_are_resolved(tmp_path: Path) -> None:
    study, runs = variants_runs(VARIANTS, tmp_path)
    runs.loc[runs["configuration"] == "beta-0p5", "fd_samples_latent_density"] = [52.5, 53.5, 52.0]  # +2, +1, +3
    text = summary(study, runs, {})
    said = section(text)
    # fd_samples_latent_density is fd_samples - seed: differences -1, -2, -3, so -2 ± t(0.975, 2) / sqrt(3) = 2.48
    assert "| MNIST | notebook | -2.00 [-4.48, 0.48] |" in text and "| MNIST | beta-0p5 | 2.00 [-0.48, 4.48] |" in text
    assert ("Within each run, paired 95% interval; higher or lower where it excludes zero:\n\n"
            "- Within the noise (the interval contains zero): MNIST notebook fd_samples_latent_density − fd_samples; "
            "MNIST beta-4 fd_samples_latent_density − fd_samples; MNIST beta-0p5") in said
    runs.loc[runs["configuration"] == "beta-0p5", "fd_samples_latent_density"] = [60.5, 62.4, 59.1]  # +10, +9.9, +10.1
    said = section(summary(study, runs, {}))
    assert "- MNIST, beta-0p5: fd_samples_latent_density higher than fd_samples (10.00 [9.75, 10.25])." in said


def test_the_report_says_whether_each_published_difference_lies_inside_the_studys_interval(tmp_path: Path) -> None:
    studies = write_study(tmp_path, "datasets: [MNIST]\nseeds: [1, 2, 3]\nconfigurations:\n  notebook: {}\n"
                                    "  beta-4: {beta: 4.0}\n  beta-2: {beta: 2.0}\nbaseline: notebook\n"
                                    "metrics: [loss]\npublished:\n  source: A paper\n  MNIST:\n"
                                    "    notebook: {loss: 99.0}\n    beta-4: {loss: 109.0}\n"
                                    "    beta-2: {loss: 120.0}\n")
    study = load_study("bad", studies, REPO / "params.yaml")
    runs = pd.DataFrame([row(f"bad-mnist-{c}-s{s}", "c1", v + base, c, s) for c, base in (("notebook", 100.0),
                        ("beta-4", 110.0), ("beta-2", 104.0)) for s, v in ((1, 0.0), (2, 0.5), (3, -0.5))])
    text = summary(study, runs, {})
    said = section(text)
    assert ("- MNIST, beta-4, loss: difference to `notebook` 10.00 [8.87, 11.13] here, +10.00 published; "
            "the published difference lies inside this study's 95% interval.") in said
    assert ("- MNIST, beta-2, loss: difference to `notebook` 4.00 [2.87, 5.13] here, +21.00 published; "
            "the published difference lies outside this study's 95% interval.") in said
    assert "| MNIST | beta-4 | loss | 3 | 110.00 ± 0.50 | 109 | **10.00 [8.87, 11.13]** | +10.00 | yes |" in text
    assert "| MNIST | beta-2 | loss | 3 | 104.00 ± 0.50 | 120 | **4.00 [2.87, 5.13]** | +21.00 | no |" in text


@pytest.mark.parametrize("losses, expected", [
    ([100.25], "- MNIST, notebook, loss: this study 100.25 against the published 99, a difference of +1.25; "
               "no interval exists with n = 1."),
    ([100.0, 100.5, 99.5], "- MNIST, notebook, loss: this study 100.00 ± 0.50 against the published 99, a "
                           "difference of +1.00 [-0.24, 2.24]; the published value lies inside this study's 95% "
                           "interval."),
    ([101.0, 101.5, 100.5], "- MNIST, notebook, loss: this study 101.00 ± 0.50 against the published 99, a "
                            "difference of +2.00 [0.76, 3.24]; the published value lies outside this study's 95% "
                            "interval."),
])
def test_without_a_baseline_the_report_says_whether_the_published_value_lies_inside(
        tmp_path: Path, losses: list[float], expected: str) -> None:
    seeds = list(range(1, len(losses) + 1))
    studies = write_study(tmp_path, f"datasets: [MNIST]\nseeds: {seeds}\nconfigurations:\n  notebook: {{}}\n"
                                    "metrics: [loss]\npublished:\n  source: A paper\n  MNIST:\n"
                                    "    notebook: {loss: 99.0}\n")
    study = load_study("bad", studies, REPO / "params.yaml")
    text = summary(study, pd.DataFrame([row(f"bad-mnist-notebook-s{s}", "c1", v, "notebook", s)
                                        for s, v in zip(seeds, losses)]), {})
    assert expected in section(text)
    assert all(q in text.replace(section(text), "") for q in INTERVAL.findall(section(text)))


def test_the_figure_draws_each_difference_to_the_baseline_and_leaves_out_other_likelihoods(tmp_path: Path) -> None:
    study, runs = variants_runs(VARIANTS, tmp_path)
    fig = figure(study, runs)
    assert [ax.get_title() for ax in fig.axes] == ["MNIST: loss", "MNIST: active_units", "MNIST: fd_samples"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["beta-4", "beta-0p5", "cb"]
    loss, _, fd = fig.axes
    assert [t.get_text() for t in loss.texts] == ["left out: other likelihood"] and not fd.texts
    assert "Left out: the likelihood metrics of cb" in fig.get_suptitle()
    d, lo, hi = welch_interval(np.array([110.0, 111.0, 110.5]), np.array([100.0, 100.5, 99.5]))
    beta4 = loss.containers[0]  # the first errorbar drawn: beta-4's
    assert beta4.lines[0].get_xydata().tolist() == [[d, 0.0]]
    assert beta4.lines[2][0].get_segments()[0].ravel().tolist() == pytest.approx([lo, 0.0, hi, 0.0])
    assert any(line.get_xdata()[0] == 0 for line in fd.lines)  # the line at zero


PAIRED = ("datasets: [MNIST]\nseeds: [1, 2, 3]\nparams: {numerics: native}\nconfigurations:\n"
          "  fp32-latent-2: {latent_dim: 2}\n"
          "  bf16-latent-2: {latent_dim: 2, precision: bf16-mixed}\n  fp32-latent-16: {latent_dim: 16}\n"
          "  bf16-latent-16: {latent_dim: 16, precision: bf16-mixed}\n"
          "baseline: {bf16-latent-2: fp32-latent-2, bf16-latent-16: fp32-latent-16}\nmetrics: [loss, fd_samples]\n")


def paired_runs(study_text: str, tmp_path: Path) -> tuple[Study, pd.DataFrame]:
    """Two pairs of configurations, each bf16 one with its own fp32 baseline, three seeds each. Every configuration's
    seeds spread alike (loss -0.5, 0, +0.5; fd_samples -1, 0, +1), so each Welch interval is d ± t(0.975, 4) times
    sqrt(2/3) the sd: ± 1.13 (loss), ± 2.27 (fd_samples). bf16-latent-2 − fp32-latent-2: loss +2 (higher),
    fd_samples +0.5 (noise); bf16-latent-16 − fp32-latent-16: loss +0.5 (noise), fd_samples -3 (lower). The two
    baselines lie 50 nats apart, so a difference to the other pair's baseline would be some 50 nats."""
    study = load_study("bad", write_study(tmp_path, study_text), REPO / "params.yaml")
    values = {"fp32-latent-2": (150.0, 20.0), "bf16-latent-2": (152.0, 20.5),
              "fp32-latent-16": (100.0, 10.0), "bf16-latent-16": (100.5, 7.0)}
    runs = pd.DataFrame([row(f"bad-mnist-{c}-s{s}", "c1", loss + step, c, s, fd_samples=fd + 2 * step,
                             likelihood="bernoulli")
                         for c, (loss, fd) in values.items() for s, step in ((1, 0.0), (2, 0.5), (3, -0.5))])
    return study, runs


def test_a_mapping_baseline_gives_each_configuration_a_row_of_differences_to_its_own(tmp_path: Path) -> None:
    study, runs = paired_runs(PAIRED, tmp_path)
    text = summary(study, runs, {})
    assert ("## Difference to each configuration's baseline, 95% Welch interval\n\n"
            "Bold: the interval excludes zero. Every other difference is within the run-to-run noise of these seeds: "
            "the data cannot tell it from zero.\n\n"
            "| dataset | configuration − baseline | loss | fd_samples |\n|---|---|---|---|\n"
            "| MNIST | bf16-latent-2 − fp32-latent-2 | **2.00 [0.87, 3.13]** | 0.50 [-1.77, 2.77] |\n"
            "| MNIST | bf16-latent-16 − fp32-latent-16 | 0.50 [-0.63, 1.63] | **-3.00 [-5.27, -0.73]** |\n\n") in text
    # never to the other pair's baseline: bf16-latent-2 − fp32-latent-16 is +52 nats and +10.5 in fd_samples,
    # bf16-latent-16 − fp32-latent-2 -49.5 and -13
    assert not re.search(r"(?<![\d.])(52\.00|10\.50|-49\.50|-13\.00) ", text)
    assert "![bad: each configuration's difference to its baseline with its 95% Welch interval](bad.png)" in text


def test_a_mapping_baseline_is_said_in_words_per_pair(tmp_path: Path) -> None:
    study, runs = paired_runs(PAIRED, tmp_path)
    text = summary(study, runs, {})
    said = section(text)
    assert said.startswith("\nDifferences to each configuration's baseline, 95% Welch interval; higher or lower where "
                           "it excludes zero:\n\n"
                           "- MNIST, bf16-latent-2 − fp32-latent-2: loss higher (2.00 [0.87, 3.13]).\n"
                           "- MNIST, bf16-latent-16 − fp32-latent-16: fd_samples lower (-3.00 [-5.27, -0.73]).\n"
                           "- Within the noise (the interval contains zero): MNIST bf16-latent-2 − fp32-latent-2 "
                           "fd_samples; MNIST bf16-latent-16 − fp32-latent-16 loss.\n")
    assert "fp32-latent-2 −" not in said and "fp32-latent-16 −" not in said  # a baseline has no difference of its own
    assert all(q in text.replace(said, "") for q in INTERVAL.findall(said))


def test_a_mapping_baseline_leaves_out_likelihood_metrics_of_another_likelihood_than_its_own(tmp_path: Path) -> None:
    study, runs = paired_runs(PAIRED, tmp_path)
    # fp32-latent-16 alone trained with another likelihood: only bf16-latent-16's loss is on another scale than its
    # baseline's (against fp32-latent-2 it would be on the same, and bf16-latent-2's against fp32-latent-16 not)
    runs.loc[runs["configuration"] == "fp32-latent-16", "likelihood"] = "continuous_bernoulli"
    said = section(summary(study, runs, {}))
    assert "- MNIST, bf16-latent-2 − fp32-latent-2: loss higher (2.00 [0.87, 3.13]).\n" in said
    assert "- Within the noise (the interval contains zero): MNIST bf16-latent-2 − fp32-latent-2 fd_samples.\n" in said
    assert ("- Not compared (likelihood metrics of a model with another likelihood than its baseline's, so on "
            "another scale): MNIST bf16-latent-16 − fp32-latent-16 loss.\n") in said
    fig = figure(study, runs)
    assert [t.get_text() for t in fig.axes[0].texts] == ["left out: other likelihood"] and not fig.axes[1].texts
    assert fig.get_suptitle().endswith("\nLeft out: the likelihood metrics of bf16-latent-16, trained with another "
                                       "likelihood than its baseline, so scored on another scale")


def test_a_mapping_baseline_judges_each_published_difference_against_its_own_baseline(tmp_path: Path) -> None:
    study, runs = paired_runs(PAIRED + "published:\n  source: A paper\n  MNIST:\n    fp32-latent-2: {loss: 149.0}\n"
                                       "    bf16-latent-2: {loss: 151.5}\n    fp32-latent-16: {loss: 98.0}\n"
                                       "    bf16-latent-16: {loss: 110.0}\n", tmp_path)
    text = summary(study, runs, {})
    assert ("| dataset | configuration | metric | n | this study | published | − its baseline, this study | "
            "− its baseline, published | published inside |") in text
    assert "| MNIST | bf16-latent-2 | loss | 3 | 152.00 ± 0.50 | 151.5 | **2.00 [0.87, 3.13]** | +2.50 | yes |" in text
    assert "| MNIST | bf16-latent-16 | loss | 3 | 100.50 ± 0.50 | 110 | 0.50 [-0.63, 1.63] | +12.00 | no |" in text
    assert "| MNIST | fp32-latent-16 | loss | 3 | 100.00 ± 0.50 | 98 |  |  |  |" in text
    said = section(text)
    assert ("- MNIST, bf16-latent-2, loss: difference to `fp32-latent-2` 2.00 [0.87, 3.13] here, +2.50 published; "
            "the published difference lies inside this study's 95% interval.") in said
    assert ("- MNIST, bf16-latent-16, loss: difference to `fp32-latent-16` 0.50 [-0.63, 1.63] here, +12.00 published; "
            "the published difference lies outside this study's 95% interval.") in said


def test_the_figure_of_a_mapping_baseline_draws_each_pairs_difference(tmp_path: Path) -> None:
    study, runs = paired_runs(PAIRED, tmp_path)
    fig = figure(study, runs)
    loss, fd = fig.axes
    assert [t.get_text() for t in loss.get_yticklabels()] == ["bf16-latent-2 − fp32-latent-2",
                                                              "bf16-latent-16 − fp32-latent-16"]
    assert fig.get_suptitle().startswith("Difference to each configuration's baseline with its 95% Welch interval")
    assert [c.lines[0].get_xydata().tolist() for c in loss.containers] == [[[2.0, 0.0]], [[0.5, 1.0]]]
    assert [c.lines[0].get_xydata().ravel().tolist() for c in fd.containers] == [pytest.approx([0.5, 0.0]),
                                                                                  pytest.approx([-3.0, 1.0])]


def test_a_likelihood_metric_of_another_likelihood_is_never_bold(tmp_path: Path) -> None:
    """Bold means resolved, and the conclusions are the one list of what is: cb's loss interval excludes zero by
    5000 nats, but on another likelihood's scale, so its cell is plain and its fd_samples (a common scale) bold."""
    study, runs = variants_runs(VARIANTS, tmp_path)
    text = summary(study, runs, {})
    cb = next(line for line in text.splitlines() if line.startswith("| MNIST | cb | -5"))
    loss, _, fd = cb.strip("| ").split(" | ")[2:5]
    assert loss.startswith("-5100.00 [") and "**" not in loss
    assert fd.startswith("**") and fd.endswith("**")
    assert "Never bold: a likelihood metric of a model with another likelihood than its baseline's" in text
    said = section(text)
    assert "MNIST cb loss." in said.split("- Not compared")[1]  # what the table leaves plain, the words leave out
    bold = re.findall(rf"\*\*({INTERVAL.pattern})\*\*", text.replace(said, ""))
    assert bold and all(f"({cell})" in said for cell in bold)  # each bold interval: one the conclusions resolve


def test_a_run_made_under_two_protocols_shows_both_rows_named_by_the_params_that_differ(tmp_path: Path) -> None:
    """One experiment name, two rows in the CSV (made again with more epochs at a larger batch): the report shows
    each protocol as its own row, labelled by what differs, and computes no spread over one run."""
    from vae.studies.report import write_report

    study = load_study("bad", write_study(tmp_path, "datasets: [MNIST]\nseeds: [42]\nconfigurations:\n  vae: {}\n"
                                                    "metrics: [loss]\npublished:\n  source: A paper\n  MNIST:\n"
                                                    "    vae: {loss: 86.0}\n"), REPO / "params.yaml")
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame([row("bad-mnist-vae-s42", c, loss, "vae", 42, likelihood="binarized", num_epochs=epochs,
                      batch_size=batch, epoch=epochs)
                  for c, loss, epochs, batch in (("c1", 88.0, 850, 50), ("c2", 87.5, 1600, 100))]
                 ).to_csv(results / "bad.csv", index=False)
    runs = write_report(study, [], results)
    assert len(runs) == 2
    text = (results / "bad.md").read_text()
    assert "**1 run** of 1 planned (2 rows: a run made under more than one protocol" in text
    assert "## The value of each configuration's one run\n" in text and "standard deviation" not in text
    assert "| MNIST | vae (num_epochs 850, batch_size 50) | 1 | 88.00 |" in text  # epoch is a metric, not a param
    assert "| MNIST | vae (num_epochs 1600, batch_size 100) | 1 | 87.50 |" in text
    assert "| MNIST | vae (num_epochs 1600, batch_size 100) | loss | 1 | 87.50 | 86 | +1.50 |" in text
    assert "±" not in text
    # the queue's view is unchanged: one row per run, the newest
    assert latest(pd.read_csv(results / "bad.csv"))["num_epochs"].tolist() == [1600]
