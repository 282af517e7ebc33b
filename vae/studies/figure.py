"""The report's figure (``NAME.png``): a forest plot of the differences to the baseline, or the means."""

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vae.studies.findings import Finding, baseline_phrase, differences, groups, spread_title
from vae.studies.spec import Study
from vae.studies.statistics import IntervalKind, decimals


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
    it contains zero, a diamond where there is none; a likelihood metric of another likelihood is left out, and a
    metric a side's runs do not report is marked not defined."""
    datasets, metrics, labels = (list(dict.fromkeys(key(f) for f in findings)) for key in
                                 (lambda f: f.dataset, lambda f: f.what.label, lambda f: f.label))
    fig, axes = _panels(datasets, metrics, labels)
    for f in findings:
        ax, y, iv = axes[datasets.index(f.dataset), metrics.index(f.what.label)], labels.index(f.label), f.interval
        if not f.comparable or iv.kind == IntervalKind.NOT_DEFINED:
            ax.text(0.5, y, "left out: other likelihood" if not f.comparable else "not defined",
                    transform=ax.get_yaxis_transform(), ha="center", va="center", fontsize=7, color="0.4")
        elif iv.exists:
            ax.errorbar(iv.d, y, xerr=[[iv.d - iv.lo], [iv.hi - iv.d]], fmt="o", ms=4, capsize=3,
                        color="C0" if f.resolved else "0.6")
        else:
            ax.plot(iv.d, y, "D", ms=4, color="0.2")
    for ax in axes.flat:
        ax.axvline(0, color="0.2", lw=0.8)
    left_out = list(dict.fromkeys(f.configuration for f in findings if not f.comparable))
    fig.suptitle(f"Difference to {baseline_phrase(study, '')} with its 95% Welch interval: blue, the interval "
                 "excludes zero; grey, it contains zero; diamond, no interval (no spread or n = 1)"
                 + (f"\nLeft out: the likelihood metrics of {', '.join(left_out)}, trained with another likelihood "
                    f"than {baseline_phrase(study, '', 'its baseline')}, so scored on another scale"
                    if left_out else ""),
                 fontsize=9)
    return fig


def _means(study: Study, runs: pd.DataFrame, metrics: list[str]) -> Figure:
    """Each configuration's mean with its standard deviation, and the published values (crosses)."""
    grouped = groups(runs, study)
    datasets, labels = list(dict.fromkeys(g.dataset for g in grouped)), list(dict.fromkeys(g.label for g in grouped))
    fig, axes = _panels(datasets, metrics, labels)
    for g in grouped:
        p = g.runs
        for ax, metric in zip(axes[datasets.index(g.dataset)], metrics):
            y = labels.index(g.label)
            ax.errorbar(p[metric].mean(), y, xerr=p[metric].std(ddof=1) if len(p) > 1 else None, fmt="o", ms=4,
                        capsize=3, color="C0")
            if (theirs := study.published.get(g.dataset, {}).get(g.configuration, {}).get(metric)) is not None:
                ax.plot(theirs, y, "x", ms=7, color="C3")
    fig.suptitle(spread_title(grouped) + ("; cross: the published value" if study.published else ""), fontsize=9)
    return fig


def figure(study: Study, runs: pd.DataFrame) -> Figure:
    """The report's figure: with a baseline, a forest plot of each configuration's difference to it per dataset
    (rows) and headline metric (columns), as the report's Welch table gives them; else the means."""
    metrics = [m for m in study.metrics if m in runs.columns]
    findings = differences(study, groups(runs, study), metrics, {m: decimals(runs[m]) for m in metrics})
    return _forest(study, findings) if findings else _means(study, runs, metrics)
