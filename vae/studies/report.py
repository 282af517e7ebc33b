"""A study's durable record (``docs/results/NAME.csv``) and its summary (``NAME.md``, ``NAME.png``).

The CSV has one row per named run at one commit: the run's settings, where it ran (CPU,
threads, torch) and every metric. ``make report`` adds the rows of the experiments it finds
and keeps every earlier row, so a study can be run in parts, on several days or machines;
the summary is made from the CSV alone, from the latest row of each run.

Intervals (scipy's t tests): the difference of a configuration's mean to its baseline's is
given with a 95% Welch interval (unequal variances, Welch-Satterthwaite degrees of freedom);
the baseline is the study's one, or the configuration's own where ``baseline:`` pairs
configurations up (the report then names both: ``bf16-latent-2 − fp32-latent-2``);
differences of two metrics of the same runs (``compare``) with a paired t interval; a study
without a baseline gets its mean minus a published number with a one-sample t interval. A
difference whose interval excludes zero is marked; one whose interval contains zero is
within the run-to-run noise; with one run on a side, or when no run of either side varies
("no spread"), there is no interval. The section "What the intervals say" states each of
these in words, quoting the tables' numbers, and the figure draws the differences.
"""

import math
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from vae.io import write_csv, write_figure, write_text
from vae.studies.experiments import Experiment, code_version, environment
from vae.studies.spec import Study

RESULTS_DIR = Path("docs/results")
RUN_COLUMNS = ("experiment", "configuration", "dataset", "seed")
PROVENANCE_COLUMNS = ("commit", "code", "cpu", "threads", "torch")
CONFIDENCE = 0.95
MARK = "**"  # a difference whose interval excludes zero is printed in bold
ONE_RUN, NO_SPREAD, NOISE = "n = 1", "no spread", "within the noise"  # an Interval's kinds besides higher and lower
# Metrics whose scale is set by the likelihood: a model of another likelihood scores another quantity
# (docs/metrics.md), so its difference to its baseline's is on no common scale.
LIKELIHOOD_METRICS = frozenset({"loss", "recon", "train_loss", "train_recon", "val_loss", "val_recon",
                                "iwae_log_likelihood_bound", "binarized_test_nll"})

Groups = list[tuple[str, str, pd.DataFrame]]


def rows_from_experiments(study: Study, found: list[Experiment]) -> list[dict[str, Any]]:
    """One CSV row per finished experiment of a planned run of ``study``, in the order of ``found``."""
    planned = {run.name: run for run in study.runs()}
    versions = {baseline: code_version(baseline) for baseline in {exp.baseline for exp in found}}
    rows = []
    for exp in found:
        run = planned.get(exp.name)
        if run is None or exp.state != "success" or not exp.metrics:
            continue
        env = environment(exp)
        rows.append({"experiment": run.name, "configuration": run.configuration, "dataset": run.dataset,
                     "seed": run.seed, **{k: exp.params.get(k) for k in dict.fromkeys([*run.overrides, *study.varied()])
                                            if k not in RUN_COLUMNS and k != "dataset_name"},
                     "commit": exp.baseline[:12], "code": versions[exp.baseline],
                     "cpu": env.get("cpu", ""), "threads": env.get("threads", ""), "torch": env.get("torch", ""),
                     **{k: v for k, v in sorted(exp.metrics.items()) if isinstance(v, int | float)}})
    return rows


def merge(old: pd.DataFrame, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``old`` with ``rows`` added after it; a row of the same run at the same commit replaces the old one
    in its place, so the rows stay in the order the runs were first recorded (what ``latest`` relies on)."""
    new = pd.DataFrame(rows)
    if new.empty:
        return old
    if old.empty:
        return new.reset_index(drop=True)
    key = ["experiment", "commit"]
    columns = list(dict.fromkeys([*old.columns, *new.columns]))
    both = pd.concat([old, new], ignore_index=True)[columns]
    place = both.groupby(key, sort=False).ngroup()  # numbered in order of first appearance
    kept = both.drop_duplicates(key, keep="last").index
    return both.loc[place.loc[kept].sort_values(kind="stable").index].reset_index(drop=True)


def read_record(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"commit": str, "code": str}) if path.exists() else pd.DataFrame()


def latest(record: pd.DataFrame) -> pd.DataFrame:
    """The last row of each run (rows are in the order they were recorded: commits oldest first)."""
    return record.drop_duplicates("experiment", keep="last") if len(record) else record


def _t_interval(d: float, samples: tuple[np.ndarray, ...], test: Callable[[], Any],
                confidence: float) -> tuple[float, float, float]:
    """``d`` and the bounds of scipy's t ``test``: nan bounds when a sample has one run, ``d, d`` when no
    sample varies (no spread; scipy's bounds of equal floats, 0.7 against 0.7, differ in their last bits)."""
    if min(len(s) for s in samples) < 2:
        return d, math.nan, math.nan
    if all(np.ptp(s) == 0 for s in samples):
        return d, d, d
    with warnings.catch_warnings():  # scipy warns of one side of equal counts (active_units); their variance is 0
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        ci = test().confidence_interval(confidence)
    return d, float(ci.low), float(ci.high)


def welch_interval(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its Welch t interval (``_t_interval`` says when there is none)."""
    return _t_interval(float(np.mean(a) - np.mean(b)), (a, b), lambda: stats.ttest_ind(a, b, equal_var=False),
                       confidence)


def paired_interval(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """mean(a - b) over the same runs and its paired t interval."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return _t_interval(float(diff.mean()), (diff,), lambda: stats.ttest_rel(a, b), confidence)


def mean_interval(a: np.ndarray, value: float, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """mean(a) - value and its one-sample t interval: ``value`` lies inside a's interval when it contains 0."""
    shifted = np.asarray(a, dtype=float) - value
    return _t_interval(float(shifted.mean()), (shifted,), lambda: stats.ttest_1samp(shifted, 0.0), confidence)


def _decimals(values: pd.Series) -> int:
    """Decimals for one metric's numbers: 2 for values of 10 and more (nats, distances), else 3."""
    return 2 if values.abs().median() >= 10 else 3


def _number(x: float, decimals: int, signed: bool = False) -> str:
    return f"{x:{'+' if signed else ''}.{decimals}f}" if math.isfinite(x) else "-"


@dataclass(frozen=True)
class Interval:
    """A difference with its 95% interval, as ``welch_interval`` and its kin return it, printed with a metric's
    decimals (``signed``: with a ``+`` on a positive difference)."""

    d: float
    lo: float
    hi: float
    decimals: int
    signed: bool = False

    @property
    def kind(self) -> str:
        """``higher`` or ``lower`` (the interval excludes zero), ``within the noise`` (it contains zero), or why
        there is no interval: ``n = 1`` (one run on a side) or ``no spread`` (no run of either side varies)."""
        if math.isnan(self.lo):
            return ONE_RUN
        if self.lo == self.hi:
            return NO_SPREAD
        return "higher" if self.lo > 0 else "lower" if self.hi < 0 else NOISE

    @property
    def resolved(self) -> bool:
        return self.kind in ("higher", "lower")

    @property
    def exists(self) -> bool:
        return self.kind not in (ONE_RUN, NO_SPREAD)

    def number(self) -> str:
        """The difference alone."""
        return _number(self.d, self.decimals, self.signed)

    def text(self) -> str:
        """``d [lo, hi]``, or ``d (n = 1)`` and ``d (no spread)`` where there is no interval."""
        if not self.exists:
            return f"{self.number()} ({self.kind})"
        return f"{self.number()} [{_number(self.lo, self.decimals)}, {_number(self.hi, self.decimals)}]"

    def cell(self) -> str:
        """The text for a table, bold where the interval excludes zero."""
        return f"{MARK}{self.text()}{MARK}" if self.resolved else self.text()


@dataclass(frozen=True)
class Finding:
    """One interval of the report: where (dataset, configuration), of what (a metric or a pair of them)."""

    dataset: str
    configuration: str
    what: str  # a metric, or ``a − b``
    interval: Interval
    comparable: bool = True  # False: a likelihood metric of another likelihood than the baseline's
    versus: str = ""  # the configuration's own baseline, where the study pairs configurations up

    @property
    def label(self) -> str:
        """The configuration, or ``configuration − its baseline`` where it has a baseline of its own."""
        return f"{self.configuration} − {self.versus}" if self.versus else self.configuration


@dataclass(frozen=True)
class PublishedRow:
    """A published value beside the study's runs, with the interval it is judged by, if any: the difference to
    the baseline (``target``: the paper's difference) or, without a baseline, the study's mean minus the published
    value (``target`` 0: the published value lies inside the study's interval when that one contains zero)."""

    dataset: str
    configuration: str
    metric: str
    runs: pd.Series
    theirs: float
    decimals: int
    interval: Interval | None = None
    target: float = 0.0
    baseline: str = ""  # the configuration the interval's difference is to

    def inside(self) -> str:
        """``yes`` or ``no``: whether ``target`` lies inside the interval; ``-`` where there is none."""
        if self.interval is None or not self.interval.exists:
            return "-"
        return "yes" if self.interval.lo <= self.target <= self.interval.hi else "no"


def _count(n: int | str, noun: str) -> str:
    """``1 run``, ``2 runs``; ``n`` may come from the CSV as text."""
    return f"{n} {noun}{'' if str(n) == '1' else 's'}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def _groups(runs: pd.DataFrame, study: Study) -> Groups:
    """(dataset, configuration, its runs) in the study file's order, then any other configuration."""
    order = list(study.configurations) + sorted(set(runs["configuration"]) - set(study.configurations))
    return [(dataset, config, part) for dataset in study.datasets for config in order
            if len(part := runs[(runs["dataset"] == dataset) & (runs["configuration"] == config)])]


def _missing(study: Study, runs: pd.DataFrame, states: dict[str, str]) -> list[str]:
    have = set(runs["experiment"]) if len(runs) else set()
    return [f"{run.name} ({states.get(run.name, 'not run')})" for run in study.runs() if run.name not in have]


def _likelihood(part: pd.DataFrame) -> frozenset[str]:
    """The likelihoods these runs trained with, as the CSV records them (none recorded: params.yaml's, for all)."""
    return frozenset(part["likelihood"].astype(str)) if "likelihood" in part.columns else frozenset()


def _to(study: Study, quote: str = "`", own: str = "each configuration's baseline") -> str:
    """What the differences are to, for a heading: the one baseline in ``quote``s, or ``own`` where the study
    gives each configuration its own (the rows then name it)."""
    return f"{quote}{study.baseline}{quote}" if isinstance(study.baseline, str) else own


def _against(study: Study, groups: Groups) -> dict[tuple[str, str], tuple[str, pd.DataFrame]]:
    """(dataset, configuration) -> its baseline and the baseline's runs on that dataset, for each configuration
    whose baseline has runs there."""
    runs = {(d, c): p for d, c, p in groups}
    return {(d, c): (b, runs[d, b]) for d, c, _ in groups if (b := study.baseline_of(c)) and (d, b) in runs}


def _differences(study: Study, groups: Groups, metrics: list[str], places: dict[str, int]) -> list[Finding]:
    """Each configuration's difference to its baseline per metric, with its Welch interval; none without one."""
    against, own = _against(study, groups), isinstance(study.baseline, dict)
    findings = []
    for d, c, p in groups:
        if (d, c) not in against:
            continue
        b, base = against[d, c]
        findings += [Finding(d, c, m, Interval(*welch_interval(p[m].to_numpy(), base[m].to_numpy()), places[m]),
                             m not in LIKELIHOOD_METRICS or _likelihood(p) == _likelihood(base), b if own else "")
                     for m in metrics]
    return findings


def _paired(study: Study, runs: pd.DataFrame, groups: Groups) -> list[Finding]:
    """Each configuration's paired difference of every ``compare`` pair its runs have."""
    pairs = [(a, b) for a, b in study.compare if a in runs.columns and b in runs.columns]
    return [Finding(d, c, f"{a} − {b}", Interval(*paired_interval(p[a].to_numpy(), p[b].to_numpy()),
                                                  _decimals(runs[b])))
            for d, c, p in groups for a, b in pairs]


def _by_group(findings: list[Finding]) -> list[tuple[str, str, list[Finding]]]:
    """``findings`` as (dataset, configuration's label, its findings), in their order."""
    where = list(dict.fromkeys((f.dataset, f.label) for f in findings))
    return [(d, c, [f for f in findings if (f.dataset, f.label) == (d, c)]) for d, c in where]


def _interval_table(findings: list[Finding]) -> list[str]:
    """One row per configuration (``configuration − baseline`` where each has its own), one column per metric or
    pair: the intervals' cells."""
    groups = _by_group(findings)
    return _table(["dataset", "configuration − baseline" if findings[0].versus else "configuration",
                   *(f.what for f in groups[0][2])], [[d, c, *(f.interval.cell() for f in fs)] for d, c, fs in groups])


def _published(study: Study, groups: Groups, places: dict[str, int]) -> list[PublishedRow]:
    """The published values of the study's configurations, each with the interval it is judged by (none for
    a baseline's own values, or where the paper gives no value of the configuration's baseline)."""
    against = _against(study, groups)
    rows = []
    for d, c, p in groups:
        paper, (b, base) = study.published.get(d, {}), against.get((d, c), ("", None))
        for metric, theirs in paper.get(c, {}).items():
            if metric not in places:
                continue
            ours, row = p[metric].to_numpy(), (d, c, metric, p[metric], theirs, places[metric])
            if study.baseline is None:
                rows.append(PublishedRow(*row, Interval(*mean_interval(ours, theirs), places[metric], signed=True)))
            elif base is not None and (paper_base := paper.get(b, {}).get(metric)) is not None:
                rows.append(PublishedRow(*row, Interval(*welch_interval(ours, base[metric].to_numpy()), places[metric]),
                                         theirs - paper_base, b))
            else:
                rows.append(PublishedRow(*row))
    return rows


def _spread(values: pd.Series, decimals: int) -> str:
    """``mean ± sd`` over the runs, or the mean alone for one run."""
    mean = _number(values.mean(), decimals)
    return f"{mean} ± {_number(values.std(ddof=1), decimals)}" if len(values) > 1 else mean


def _published_table(study: Study, rows: list[PublishedRow]) -> list[str]:
    """The study's numbers beside the published ones: without a baseline, the study's mean minus the published
    value; with one, each configuration's difference to it beside the paper's difference."""
    heading = [f"## Beside the published numbers: {study.source}", ""]
    header = ["dataset", "configuration", "metric", "n", "this study", "published"]
    cells = [[r.dataset, r.configuration, r.metric, str(len(r.runs)), _spread(r.runs, r.decimals),
              f"{r.theirs:g}"] for r in rows]
    if study.baseline is None:
        return [*heading, *_table([*header, "this study − published"],
                                  [[*row, r.interval.text() if r.interval.exists else r.interval.number()]
                                   for row, r in zip(cells, rows)])]
    return [*heading,
            f"Differences are to {_to(study)}, here with their 95% Welch interval; the last column says "
            "whether the published difference lies inside that interval.", "",
            *_table([*header, f"− {(to := _to(study, '', 'its baseline'))}, this study", f"− {to}, published",
                     "published inside"],
                    [[*row, *((r.interval.cell(), f"{r.target:+.2f}", r.inside()) if r.interval else ("", "", ""))]
                     for row, r in zip(cells, rows)])]


def _grouped(findings: list[Finding], show: Callable[[Finding], str]) -> str:
    """``MNIST beta-0p5 loss, kl; MNIST conv loss``: ``findings`` shown per dataset and configuration."""
    return "; ".join(f"{d} {c} " + ", ".join(show(f) for f in fs) for d, c, fs in _by_group(findings))


def _said(findings: list[Finding], direction: Callable[[Finding], str]) -> list[str]:
    """The list items of ``findings``: one per configuration with a resolved difference (its direction and its
    interval, as the tables print it), then those within the noise, without spread or with one run, grouped."""
    resolved = [f for f in findings if f.comparable and f.interval.resolved]
    items = [f"- {d}, {c}: " + "; ".join(f"{direction(f)} ({f.interval.text()})" for f in fs) + "."
             for d, c, fs in _by_group(resolved)]
    for kind, label in ((NOISE, "Within the noise (the interval contains zero)"),
                        (NO_SPREAD, "No spread (the runs' values do not vary, so there is no interval)"),
                        (ONE_RUN, "One run (n = 1), so no interval exists")):
        some = [f for f in findings if f.comparable and f.interval.kind == kind]
        if some:
            shown = _grouped(some, (lambda f: f.what) if kind == NOISE
                             else (lambda f: f"{f.what} {f.interval.number()}"))
            items.append(f"- {label}: {shown}.")
    return items


def _said_of_differences(study: Study, findings: list[Finding]) -> list[str]:
    """The differences to the baselines in words; likelihood metrics on another scale are named, not compared."""
    apart = [f for f in findings if not f.comparable]
    lines = [f"Differences to {_to(study)}, 95% Welch interval; higher or lower where it excludes zero:", "",
             *_said(findings, lambda f: f"{f.what} {f.interval.kind}")]
    if apart:
        lines.append(f"- Not compared (likelihood metrics of a model with another likelihood than "
                     f"{_to(study, own='its baseline')}'s, so on another scale): {_grouped(apart, lambda f: f.what)}.")
    return [*lines, ""]


def _said_of_pairs(findings: list[Finding]) -> list[str]:
    """The ``compare`` pairs in words: ``a lower than b`` where the paired interval excludes zero."""
    def direction(f: Finding) -> str:
        a, b = f.what.split(" − ")
        return f"{a} {f.interval.kind} than {b}"
    return ["Within each run, paired 95% interval; higher or lower where it excludes zero:", "",
            *_said(findings, direction), ""]


def _said_of_published(study: Study, rows: list[PublishedRow]) -> list[str]:
    """Whether each published value lies inside the study's interval, or why there is none."""
    items = []
    for r in rows:
        if r.interval is None:
            continue
        shown = r.interval.text() if r.interval.exists else r.interval.number()
        if study.baseline is None:
            compared, value = (f"this study {_spread(r.runs, r.decimals)} against the published "
                               f"{r.theirs:g}, a difference of {shown}"), "value"
        else:
            compared, value = f"difference to `{r.baseline}` {shown} here, {r.target:+.2f} published", "difference"
        verdict = {ONE_RUN: "no interval exists with n = 1", NO_SPREAD: "no interval exists: no run varies"}.get(
            r.interval.kind, f"the published {value} lies {'inside' if r.inside() == 'yes' else 'outside'} this "
                             "study's 95% interval")
        items.append(f"- {r.dataset}, {r.configuration}, {r.metric}: {compared}; {verdict}.")
    return ["Beside the published numbers:", "", *items, ""] if items else []


def _conclusions(study: Study, differences: list[Finding], pairs: list[Finding],
                 published: list[PublishedRow]) -> list[str]:
    """The section "What the intervals say": the tables' intervals in words, each quoted as the tables print it."""
    said = [*(_said_of_differences(study, differences) if differences else []),
            *(_said_of_pairs(pairs) if pairs else []), *_said_of_published(study, published)]
    if not said:
        return []
    return ["## What the intervals say", "", *said]


def summary(study: Study, runs: pd.DataFrame, states: dict[str, str]) -> str:
    """The study's Markdown report from its latest rows ``runs``; ``states`` of experiments not in the CSV."""
    metrics = [m for m in study.metrics if len(runs) and m in runs.columns]
    lines = [f"# Study `{study.name}`", "", study.description, "",
             f"Generated by `make report STUDY={study.name}` from `{study.name}.csv` (one row per run); "
             f"do not edit. Runs: `make study STUDY={study.name}` ({study.path}).", ""]
    missing = _missing(study, runs, states)
    lines += [f"**{_count(len(runs), 'run')}** of {len(study.runs())} planned"
              + (f"; missing: {', '.join(missing)}." if missing else "; none missing."), ""]
    if not len(runs):
        return "\n".join(lines)
    machines = Counter(f"{r.cpu}, {_count(r.threads, 'thread')}, torch {r.torch}" for r in runs.itertuples())
    commits = Counter(f"`{c}` (code {v})" for c, v in zip(runs["commit"], runs["code"]))
    lines += ["Ran on: " + "; ".join(f"{m} ({_count(n, 'run')})" for m, n in machines.items()) + ".",
              "Commits: " + "; ".join(f"{c} ({_count(n, 'run')})" for c, n in commits.items()) + ".", ""]
    if runs["code"].nunique() > 1:
        lines += ["**The runs come from more than one version of the code**: compare with care.", ""]
    groups = _groups(runs, study)
    places = {m: _decimals(runs[m]) for m in metrics}
    lines += ["## Mean ± standard deviation over seeds", ""]
    lines += _table(["dataset", "configuration", "n", *metrics],
                    [[d, c, str(len(p)), *(_spread(p[m], places[m]) for m in metrics)] for d, c, p in groups])
    differences = _differences(study, groups, metrics, places)
    if differences:
        no_spread = any(f.interval.kind == NO_SPREAD for f in differences)
        lines += [f"## Difference to {_to(study)}, 95% Welch interval", "",
                  "Bold: the interval excludes zero. "
                  + ("No spread: every run of both gave the same value, so there is no interval. " if no_spread else "")
                  + "Every other difference is within the run-to-run noise of these seeds: the data cannot tell it "
                  "from zero.", "", *_interval_table(differences)]
    pairs = _paired(study, runs, groups)
    if pairs:
        lines += ["## Within each run, paired 95% interval", "", *_interval_table(pairs)]
    published = _published(study, groups, places) if study.published else []
    if published:
        lines += _published_table(study, published)
    lines += _conclusions(study, differences, pairs, published)
    caption = (f"each configuration's difference to {_to(study, '', 'its baseline')} with its 95% Welch interval"
               if differences
               else "mean and standard deviation of each headline metric")
    lines += [f"![{study.name}: {caption}]({study.name}.png)", ""]
    return "\n".join(lines)


def _panels(datasets: list[str], metrics: list[str], labels: list[str]) -> tuple[Figure, np.ndarray]:
    """A row of panels per dataset, one per metric, with ``labels`` down their shared y axis."""
    fig = Figure(figsize=(1.6 + 2.5 * len(metrics), 0.8 + len(datasets) * (1.3 + 0.28 * len(labels))),
                 layout="constrained")
    axes = fig.subplots(len(datasets), len(metrics), sharey=True, squeeze=False)
    for (i, j), ax in np.ndenumerate(axes):
        ax.set_title(f"{datasets[i]}: {metrics[j]}", fontsize=9)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.1)
    return fig, axes


def _forest(study: Study, findings: list[Finding]) -> Figure:
    """Each configuration's difference to its baseline with its interval: blue where it excludes zero, grey where
    it contains zero, a diamond where there is none; a likelihood metric of another likelihood is left out."""
    datasets, metrics, labels = (list(dict.fromkeys(key(f) for f in findings)) for key in
                                 (lambda f: f.dataset, lambda f: f.what, lambda f: f.label))
    fig, axes = _panels(datasets, metrics, labels)
    for f in findings:
        ax, y, iv = axes[datasets.index(f.dataset), metrics.index(f.what)], labels.index(f.label), f.interval
        if not f.comparable:
            ax.text(0.5, y, "left out: other likelihood", transform=ax.get_yaxis_transform(), ha="center",
                    va="center", fontsize=7, color="0.4")
        elif iv.exists:
            ax.errorbar(iv.d, y, xerr=[[iv.d - iv.lo], [iv.hi - iv.d]], fmt="o", ms=4, capsize=3,
                        color="C0" if iv.resolved else "0.6")
        else:
            ax.plot(iv.d, y, "D", ms=4, color="0.2")
    for ax in axes.flat:
        ax.axvline(0, color="0.2", lw=0.8)
    left_out = list(dict.fromkeys(f.configuration for f in findings if not f.comparable))
    fig.suptitle(f"Difference to {_to(study, '')} with its 95% Welch interval: blue, the interval excludes zero; grey, "
                 "it contains zero; diamond, no interval (no spread or n = 1)"
                 + (f"\nLeft out: the likelihood metrics of {', '.join(left_out)}, trained with another likelihood "
                    f"than {_to(study, '', 'its baseline')}, so scored on another scale" if left_out else ""),
                 fontsize=9)
    return fig


def _means(study: Study, runs: pd.DataFrame, metrics: list[str]) -> Figure:
    """Each configuration's mean with its standard deviation, and the published values (crosses)."""
    groups = _groups(runs, study)
    datasets, labels = list(dict.fromkeys(d for d, _, _ in groups)), list(dict.fromkeys(c for _, c, _ in groups))
    fig, axes = _panels(datasets, metrics, labels)
    for d, c, p in groups:
        for ax, metric in zip(axes[datasets.index(d)], metrics):
            y = labels.index(c)
            ax.errorbar(p[metric].mean(), y, xerr=p[metric].std(ddof=1) if len(p) > 1 else None, fmt="o", ms=4,
                        capsize=3, color="C0")
            if (theirs := study.published.get(d, {}).get(c, {}).get(metric)) is not None:
                ax.plot(theirs, y, "x", ms=7, color="C3")
    several = runs.duplicated(["dataset", "configuration"]).any()
    fig.suptitle(("Mean ± standard deviation over seeds" if several else "The value of each configuration's one run")
                 + ("; cross: the published value" if study.published else ""), fontsize=9)
    return fig


def figure(study: Study, runs: pd.DataFrame) -> Figure:
    """The report's figure: with a baseline, a forest plot of each configuration's difference to it per dataset
    (rows) and headline metric (columns), as the report's Welch table gives them; else the means."""
    metrics = [m for m in study.metrics if m in runs.columns]
    findings = _differences(study, _groups(runs, study), metrics, {m: _decimals(runs[m]) for m in metrics})
    return _forest(study, findings) if findings else _means(study, runs, metrics)


def write_report(study: Study, found: list[Experiment], results_dir: Path = RESULTS_DIR) -> pd.DataFrame:
    """Add ``found``'s finished runs to the study's CSV and rewrite its Markdown and PNG; return the latest rows."""
    csv = results_dir / f"{study.name}.csv"
    record = merge(read_record(csv), rows_from_experiments(study, found))
    runs = latest(record)
    states = {exp.name: exp.state for exp in found if exp.state != "success"}
    if len(record):
        write_csv(csv, record)
    write_text(results_dir / f"{study.name}.md", summary(study, runs, states))
    if len(runs) and any(m in runs.columns for m in study.metrics):
        write_figure(results_dir / f"{study.name}.png", figure(study, runs), dpi=110)
    return runs
