"""What a study's report compares, carried as data: each configuration's runs, their differences and intervals.

The difference of a configuration's mean to its baseline's (the study's one, or the
configuration's own where ``baseline:`` pairs configurations up), the paired difference of two
metrics of the same runs (``compare``), and the published values beside the study's runs. The
tables, the conclusions and the figure print these; nothing is parsed back from text.
"""

from dataclasses import dataclass

import pandas as pd

from vae.studies.spec import Study
from vae.studies.statistics import MARK, Interval, decimals, mean_interval, paired_interval, welch_interval

# Metrics whose scale is set by the likelihood: a model of another likelihood scores another quantity
# (docs/metrics.md), so its difference to its baseline's is on no common scale.
LIKELIHOOD_METRICS = frozenset({"loss", "recon", "train_loss", "train_recon", "val_loss", "val_recon",
                                "iwae_log_likelihood_bound", "binarized_test_nll"})

Groups = list[tuple[str, str, pd.DataFrame]]


@dataclass(frozen=True)
class Comparison:
    """What an interval is of: a metric's difference between configurations, or with ``minus`` the paired
    difference ``metric − minus`` of two metrics of the same runs."""

    metric: str
    minus: str = ""

    @property
    def label(self) -> str:
        """How the report names it: the metric, or ``a − b``."""
        return f"{self.metric} − {self.minus}" if self.minus else self.metric


@dataclass(frozen=True)
class Finding:
    """One interval of the report: where (dataset, configuration), of what (a metric or a pair of them)."""

    dataset: str
    configuration: str
    what: Comparison
    interval: Interval
    comparable: bool = True  # False: a likelihood metric of another likelihood than the baseline's
    versus: str = ""  # the configuration's own baseline, where the study pairs configurations up

    @property
    def label(self) -> str:
        """The configuration, or ``configuration − its baseline`` where it has a baseline of its own."""
        return f"{self.configuration} − {self.versus}" if self.versus else self.configuration

    @property
    def resolved(self) -> bool:
        """Whether the report calls this difference resolved: its interval excludes zero and it is on a common
        scale (a likelihood metric of another likelihood is never resolved). The tables' bold, the conclusions'
        list and the figure's colour all ask this, so they cannot disagree."""
        return self.comparable and self.interval.resolved

    def cell(self) -> str:
        """The interval's text for a table, bold where the difference is ``resolved``."""
        return f"{MARK}{self.interval.text()}{MARK}" if self.resolved else self.interval.text()


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


def groups(runs: pd.DataFrame, study: Study) -> Groups:
    """(dataset, configuration, its runs) in the study file's order, then any other configuration."""
    order = list(study.configurations) + sorted(set(runs["configuration"]) - set(study.configurations))
    return [(dataset, config, part) for dataset in study.datasets for config in order
            if len(part := runs[(runs["dataset"] == dataset) & (runs["configuration"] == config)])]


def by_group(findings: list[Finding]) -> list[tuple[str, str, list[Finding]]]:
    """``findings`` as (dataset, configuration's label, its findings), in their order."""
    where = list(dict.fromkeys((f.dataset, f.label) for f in findings))
    return [(d, c, [f for f in findings if (f.dataset, f.label) == (d, c)]) for d, c in where]


def baseline_phrase(study: Study, quote: str = "`", own: str = "each configuration's baseline") -> str:
    """What the differences are to, for a heading: the one baseline in ``quote``s, or ``own`` where the study
    gives each configuration its own (the rows then name it)."""
    return f"{quote}{study.baseline}{quote}" if isinstance(study.baseline, str) else own


def _likelihood(part: pd.DataFrame) -> frozenset[str]:
    """The likelihoods these runs trained with, as the CSV records them (none recorded: params.yaml's, for all)."""
    return frozenset(part["likelihood"].astype(str)) if "likelihood" in part.columns else frozenset()


def _against(study: Study, grouped: Groups) -> dict[tuple[str, str], tuple[str, pd.DataFrame]]:
    """(dataset, configuration) -> its baseline and the baseline's runs on that dataset, for each configuration
    whose baseline has runs there."""
    runs = {(d, c): p for d, c, p in grouped}
    return {(d, c): (b, runs[d, b]) for d, c, _ in grouped if (b := study.baseline_of(c)) and (d, b) in runs}


def differences(study: Study, grouped: Groups, metrics: list[str], places: dict[str, int]) -> list[Finding]:
    """Each configuration's difference to its baseline per metric, with its Welch interval; none without one."""
    against, own = _against(study, grouped), isinstance(study.baseline, dict)
    findings = []
    for d, c, p in grouped:
        if (d, c) not in against:
            continue
        b, base = against[d, c]
        findings += [Finding(d, c, Comparison(m), Interval(*welch_interval(p[m].to_numpy(), base[m].to_numpy()),
                                                           places[m]),
                             m not in LIKELIHOOD_METRICS or _likelihood(p) == _likelihood(base), b if own else "")
                     for m in metrics]
    return findings


def paired(study: Study, runs: pd.DataFrame, grouped: Groups) -> list[Finding]:
    """Each configuration's paired difference of every ``compare`` pair its runs have."""
    pairs = [(a, b) for a, b in study.compare if a in runs.columns and b in runs.columns]
    return [Finding(d, c, Comparison(a, b), Interval(*paired_interval(p[a].to_numpy(), p[b].to_numpy()),
                                                     decimals(runs[b])))
            for d, c, p in grouped for a, b in pairs]


def published(study: Study, grouped: Groups, places: dict[str, int]) -> list[PublishedRow]:
    """The published values of the study's configurations, each with the interval it is judged by (none for
    a baseline's own values, or where the paper gives no value of the configuration's baseline)."""
    against = _against(study, grouped)
    rows = []
    for d, c, p in grouped:
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
