"""A study's durable record (``docs/results/NAME.csv``) and its summary (``NAME.md``, ``NAME.png``).

The CSV has one row per named run at one commit: the run's settings, where it ran (CPU,
threads, torch) and every metric. ``make report`` adds the rows of the experiments it finds
and keeps every earlier row, so a study can be run in parts, on several days or machines;
the summary is made from the CSV alone, from the latest row of each run.

Intervals: the difference of a configuration's mean to the baseline's is given with a 95%
Welch interval (unequal variances, Welch-Satterthwaite degrees of freedom); differences of
two metrics of the same runs (``compare``) with a paired t interval. A difference whose
interval excludes zero is marked; every other one is within the run-to-run noise.
"""

import math
from collections import Counter
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


def rows_from_experiments(study: Study, found: list[Experiment]) -> list[dict[str, Any]]:
    """One CSV row per finished experiment of a planned run of ``study``."""
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
    """``old`` with ``rows`` added; a row of the same run at the same commit replaces the old one."""
    new = pd.DataFrame(rows)
    if new.empty:
        return old
    if old.empty:
        return new.reset_index(drop=True)
    key = ["experiment", "commit"]
    kept = old[~old.set_index(key).index.isin(new.set_index(key).index)]
    columns = list(dict.fromkeys([*old.columns, *new.columns]))
    return pd.concat([kept, new], ignore_index=True)[columns]


def read_record(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"commit": str, "code": str}) if path.exists() else pd.DataFrame()


def latest(record: pd.DataFrame) -> pd.DataFrame:
    """The last row of each run (rows are in the order they were added)."""
    return record.drop_duplicates("experiment", keep="last") if len(record) else record


def welch_interval(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its Welch t interval; (d, nan, nan) when either side has fewer than 2 runs."""
    d = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return d, math.nan, math.nan
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return d, d, d
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se
    return d, d - half, d + half


def paired_interval(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """mean(a - b) over the same runs and its paired t interval (nan bounds below 2 runs)."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = float(diff.mean())
    if len(diff) < 2:
        return d, math.nan, math.nan
    half = float(stats.t.ppf((1 + confidence) / 2, len(diff) - 1)) * float(diff.std(ddof=1)) / math.sqrt(len(diff))
    return d, d - half, d + half


def _decimals(values: pd.Series) -> int:
    """Decimals for one metric's numbers: 2 for values of 10 and more (nats, distances), else 3."""
    return 2 if values.abs().median() >= 10 else 3


def _number(x: float, decimals: int) -> str:
    return f"{x:.{decimals}f}" if math.isfinite(x) else "-"


def _interval(d: float, lo: float, hi: float, decimals: int) -> str:
    if math.isnan(lo):
        return f"{_number(d, decimals)} (n < 2)"
    text = f"{_number(d, decimals)} [{_number(lo, decimals)}, {_number(hi, decimals)}]"
    return f"{MARK}{text}{MARK}" if lo > 0 or hi < 0 else text


def _count(n: int | str, noun: str) -> str:
    """``1 run``, ``2 runs``; ``n`` may come from the CSV as text."""
    return f"{n} {noun}{'' if str(n) == '1' else 's'}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def _groups(runs: pd.DataFrame, study: Study) -> list[tuple[str, str, pd.DataFrame]]:
    """(dataset, configuration, its runs) in the study file's order, then any other configuration."""
    order = list(study.configurations) + sorted(set(runs["configuration"]) - set(study.configurations))
    return [(dataset, config, part) for dataset in study.datasets for config in order
            if len(part := runs[(runs["dataset"] == dataset) & (runs["configuration"] == config)])]


def _missing(study: Study, runs: pd.DataFrame, states: dict[str, str]) -> list[str]:
    have = set(runs["experiment"]) if len(runs) else set()
    return [f"{run.name} ({states.get(run.name, 'not run')})" for run in study.runs() if run.name not in have]


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
                    [[d, c, str(len(p)), *(f"{_number(p[m].mean(), places[m])} ± {_number(p[m].std(ddof=1), places[m])}"
                                           if len(p) > 1 else _number(p[m].mean(), places[m]) for m in metrics)]
                     for d, c, p in groups])
    if study.baseline is not None:
        base = {d: p for d, c, p in groups if c == study.baseline}
        lines += [f"## Difference to `{study.baseline}`, 95% Welch interval", "",
                  "Bold: the interval excludes zero. Every other difference is within the run-to-run noise "
                  "of these seeds: the data cannot tell it from zero.", ""]
        lines += _table(["dataset", "configuration", *metrics],
                        [[d, c, *(_interval(*welch_interval(p[m].to_numpy(), base[d][m].to_numpy()), places[m])
                                  for m in metrics)]
                         for d, c, p in groups if c != study.baseline and d in base])
    pairs = [(a, b) for a, b in study.compare if a in runs.columns and b in runs.columns]
    if pairs:
        lines += ["## Within each run, paired 95% interval", ""]
        lines += _table(["dataset", "configuration", *(f"{a} − {b}" for a, b in pairs)],
                        [[d, c, *(_interval(*paired_interval(p[a].to_numpy(), p[b].to_numpy()), _decimals(runs[b]))
                                  for a, b in pairs)]
                         for d, c, p in groups])
    if study.published:
        lines += _published(study, groups, places)
    lines += [f"![{study.name}: mean and standard deviation of each headline metric]({study.name}.png)", ""]
    return "\n".join(lines)


def _published(study: Study, groups: list[tuple[str, str, pd.DataFrame]], places: dict[str, int]) -> list[str]:
    """The study's numbers beside the published ones.

    With a baseline, each configuration's difference to it (95% Welch interval) is set beside the
    paper's difference; without one, the study's mean minus the published number.
    """
    base = {d: p for d, c, p in groups if c == study.baseline}
    rows = []
    for d, c, p in groups:
        for metric, theirs in study.published.get(d, {}).get(c, {}).items():
            if metric not in places:
                continue
            ours = p[metric]
            row = [d, c, metric, str(len(p)), f"{_number(ours.mean(), places[metric])}"
                   + (f" ± {_number(ours.std(ddof=1), places[metric])}" if len(p) > 1 else ""), f"{theirs:g}"]
            if study.baseline is None:
                row.append(f"{ours.mean() - theirs:+.{places[metric]}f}")
            elif (c != study.baseline and d in base
                  and (paper_base := study.published.get(d, {}).get(study.baseline, {}).get(metric)) is not None):
                diff, lo, hi = welch_interval(ours.to_numpy(), base[d][metric].to_numpy())
                paper_diff = theirs - paper_base
                inside = "-" if math.isnan(lo) else ("yes" if lo <= paper_diff <= hi else "no")
                row += [_interval(diff, lo, hi, places[metric]), f"{paper_diff:+.2f}", inside]
            else:
                row += ["", "", ""]
            rows.append(row)
    if not rows:
        return []
    heading = [f"## Beside the published numbers: {study.source}", ""]
    header = ["dataset", "configuration", "metric", "n", "this study", "published"]
    if study.baseline is None:
        return [*heading, *_table([*header, "this study − published"], rows)]
    return [*heading,
            f"Differences are to `{study.baseline}`, here with their 95% Welch interval; the last column says "
            "whether the published difference lies inside that interval.", "",
            *_table([*header, f"− {study.baseline}, this study", f"− {study.baseline}, published",
                     "published inside"], rows)]


def figure(study: Study, runs: pd.DataFrame) -> Figure:
    """One panel per headline metric: each configuration's mean with its standard deviation, per dataset."""
    metrics = [m for m in study.metrics if m in runs.columns]
    fig = Figure(figsize=(4 * len(metrics), 3.6), layout="constrained")
    configs = list(dict.fromkeys(c for _, c, _ in _groups(runs, study)))
    for ax, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics):
        for i, dataset in enumerate(study.datasets):
            shift = (i - (len(study.datasets) - 1) / 2) * 0.15
            part = runs[runs["dataset"] == dataset].groupby("configuration")[metric]
            x = [j + shift for j, c in enumerate(configs) if c in part.groups]
            ax.errorbar(x, [part.get_group(c).mean() for c in configs if c in part.groups],
                        yerr=[part.get_group(c).std(ddof=1) if len(part.get_group(c)) > 1 else 0
                              for c in configs if c in part.groups], fmt="o", capsize=3, label=dataset)
        ax.set_xticks(range(len(configs)), configs, rotation=45, ha="right")
        ax.set_title(metric, fontsize=10)
    if len(study.datasets) > 1:
        fig.axes[0].legend(fontsize=8)
    return fig


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
