"""What a study's report compares, carried as data: each configuration's runs, their differences and intervals.

The difference of a configuration's mean to its baseline's (the study's one, or the
configuration's own where ``baseline:`` pairs configurations up), the paired difference of two
metrics of the same runs (``compare``), and the published values beside the study's runs. The
tables, the conclusions and the figure print these; nothing is parsed back from text.
"""

from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd

from vae.studies.record import param_columns
from vae.studies.spec import Study, format_value
from vae.studies.statistics import MARK, Interval, decimals, mean_interval, paired_interval, welch_interval

# Metrics whose scale is set by the likelihood: a model of another likelihood scores another quantity
# (docs/metrics.md), so its difference to its baseline's is on no common scale.
LIKELIHOOD_METRICS = frozenset({"loss", "recon", "train_loss", "train_recon", "val_loss", "val_recon",
                                "iwae_log_likelihood_bound", "binarized_test_nll", "bits_per_dim",
                                "iwae_bits_per_dim"})



class Group(NamedTuple):
    """One row of the report's tables: a configuration's runs on a dataset under one protocol. ``protocol``
    names the params that tell these runs from the configuration's runs under another protocol
    (``batch_size 50, num_epochs 850``); it is empty where the configuration ran with one set of params."""

    dataset: str
    configuration: str
    runs: pd.DataFrame
    protocol: str = ""

    @property
    def label(self) -> str:
        """How the report names the row: the configuration, with its protocol where it has more than one."""
        return f"{self.configuration} ({self.protocol})" if self.protocol else self.configuration


Groups = list[Group]


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


def _value(value: object) -> str:
    """A param's value as the study files write it (``850``, ``0.5``, ``binarized``); numpy's scalars as Python's."""
    return format_value(value.item() if hasattr(value, "item") else value)


def _protocols(dataset: str, configuration: str, part: pd.DataFrame) -> Groups:
    """``part``'s runs split by the set of params they ran with, in the order they were recorded; each group
    named by the params that differ between them (none where there is one set)."""
    columns = param_columns(part)
    split = [p for _, p in part.groupby(columns, dropna=False, sort=False)] if columns else [part]
    if len(split) == 1:
        return [Group(dataset, configuration, part)]
    differ = [c for c in columns if part[c].nunique(dropna=False) > 1]
    return [Group(dataset, configuration, p, ", ".join(f"{c} {_value(p[c].iloc[0])}" for c in differ))
            for p in split]


def groups(runs: pd.DataFrame, study: Study) -> Groups:
    """Each configuration's runs per dataset and protocol, in the study file's order, then any other configuration."""
    order = list(study.configurations) + sorted(set(runs["configuration"]) - set(study.configurations))
    return [group for dataset in study.datasets for config in order
            if len(part := runs[(runs["dataset"] == dataset) & (runs["configuration"] == config)])
            for group in _protocols(dataset, config, part)]


def spread_title(grouped: Groups) -> str:
    """What the means' table and figure show: a mean ± standard deviation over seeds, or where a row has one
    run its value alone (no spread is computed over one run)."""
    ones = [len(g.runs) == 1 for g in grouped]
    if all(ones):
        return "The value of each configuration's one run"
    return "Mean ± standard deviation over seeds" + ("; one run: its value alone" if any(ones) else "")


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


def _shared(study: Study, group: Group) -> tuple[str, ...]:
    """The group's values of the params no configuration sets: the protocol a configuration and its baseline
    must share for their difference to be one of the configurations alone."""
    shared = [c for c in param_columns(group.runs) if c not in study.varied()]
    return tuple(_value(v) for v in group.runs[shared].iloc[0])


def _against(study: Study, grouped: Groups) -> dict[tuple[str, str], Group]:
    """(dataset, row label) -> its baseline's runs on that dataset: the baseline's one group there, or where the
    baseline ran under several protocols the one that shares the row's (none shares it: no difference)."""
    found = {}
    for g in grouped:
        b = study.baseline_of(g.configuration)
        bases = [base for base in grouped if b and (base.dataset, base.configuration) == (g.dataset, b)]
        same = bases if len(bases) == 1 else [base for base in bases if _shared(study, base) == _shared(study, g)]
        if same:
            found[g.dataset, g.label] = same[0]
    return found


def differences(study: Study, grouped: Groups, metrics: list[str], places: dict[str, int]) -> list[Finding]:
    """Each configuration's difference to its baseline per metric, with its Welch interval; none without one."""
    against, own = _against(study, grouped), isinstance(study.baseline, dict)
    findings = []
    for g in grouped:
        if (base := against.get((g.dataset, g.label))) is None:
            continue
        p, b = g.runs, base.runs
        findings += [Finding(g.dataset, g.label, Comparison(m),
                             Interval(*welch_interval(p[m].to_numpy(), b[m].to_numpy()), places[m]),
                             m not in LIKELIHOOD_METRICS or _likelihood(p) == _likelihood(b), base.label if own else "")
                     for m in metrics]
    return findings


def paired(study: Study, runs: pd.DataFrame, grouped: Groups) -> list[Finding]:
    """Each configuration's paired difference of every ``compare`` pair its runs have."""
    pairs = [(a, b) for a, b in study.compare if a in runs.columns and b in runs.columns]
    return [Finding(g.dataset, g.label, Comparison(a, b),
                    Interval(*paired_interval(g.runs[a].to_numpy(), g.runs[b].to_numpy()), decimals(runs[b])))
            for g in grouped for a, b in pairs]


def published(study: Study, grouped: Groups, places: dict[str, int]) -> list[PublishedRow]:
    """The published values of the study's configurations, each with the interval it is judged by (none for
    a baseline's own values, or where the paper gives no value of the configuration's baseline)."""
    against = _against(study, grouped)
    rows = []
    for g in grouped:
        paper, base = study.published.get(g.dataset, {}), against.get((g.dataset, g.label))
        for metric, theirs in paper.get(g.configuration, {}).items():
            if metric not in places:
                continue
            ours, row = g.runs[metric].to_numpy(), (g.dataset, g.label, metric, g.runs[metric], theirs, places[metric])
            if study.baseline is None:
                rows.append(PublishedRow(*row, Interval(*mean_interval(ours, theirs), places[metric], signed=True)))
            elif base is not None and (paper_base := paper.get(base.configuration, {}).get(metric)) is not None:
                rows.append(PublishedRow(*row, Interval(*welch_interval(ours, base.runs[metric].to_numpy()),
                                                        places[metric]), theirs - paper_base, base.label))
            else:
                rows.append(PublishedRow(*row))
    return rows
