"""The report's section "What the intervals say": the tables' intervals in words, each quoted as the tables print it."""

from collections.abc import Callable

from vae.studies.findings import Finding, PublishedRow, baseline_phrase, by_group
from vae.studies.spec import Study
from vae.studies.statistics import IntervalKind, spread

# The kinds without a direction, each listed in one item of configurations, in this order.
UNRESOLVED = ((IntervalKind.NOISE, "Within the noise (the interval contains zero)"),
              (IntervalKind.NO_SPREAD, "No spread (the runs' values do not vary, so there is no interval)"),
              (IntervalKind.ONE_RUN, "One run (n = 1), so no interval exists"),
              (IntervalKind.NOT_DEFINED, "Not defined (the runs of a side do not report the metric)"))


def _grouped(findings: list[Finding], show: Callable[[Finding], str]) -> str:
    """``MNIST beta-0p5 loss, kl; MNIST conv loss``: ``findings`` shown per dataset and configuration."""
    return "; ".join(f"{d} {c} " + ", ".join(show(f) for f in fs) for d, c, fs in by_group(findings))


def _said(findings: list[Finding], direction: Callable[[Finding], str]) -> list[str]:
    """The list items of ``findings``: one per configuration with a resolved difference (its direction and its
    interval, as the tables print it), then those within the noise, without spread, with one run or not defined,
    grouped."""
    resolved = [f for f in findings if f.resolved]
    items = [f"- {d}, {c}: " + "; ".join(f"{direction(f)} ({f.interval.text()})" for f in fs) + "."
             for d, c, fs in by_group(resolved)]
    for kind, label in UNRESOLVED:
        some = [f for f in findings if f.comparable and f.interval.kind == kind]
        if some:
            shown = _grouped(some, (lambda f: f.what.label) if kind in (IntervalKind.NOISE, IntervalKind.NOT_DEFINED)
                             else (lambda f: f"{f.what.label} {f.interval.number()}"))
            items.append(f"- {label}: {shown}.")
    return items


def _said_of_differences(study: Study, findings: list[Finding]) -> list[str]:
    """The differences to the baselines in words; likelihood metrics on another scale are named, not compared."""
    apart = [f for f in findings if not f.comparable]
    lines = [f"Differences to {baseline_phrase(study)}, 95% Welch interval; higher or lower where it excludes zero:",
             "", *_said(findings, lambda f: f"{f.what.label} {f.interval.kind.value}")]
    if apart:
        lines.append(f"- Not compared (likelihood metrics of a model with another likelihood than "
                     f"{baseline_phrase(study, own='its baseline')}'s, so on another scale): "
                     f"{_grouped(apart, lambda f: f.what.label)}.")
    return [*lines, ""]


def _said_of_pairs(findings: list[Finding]) -> list[str]:
    """The ``compare`` pairs in words: ``a lower than b`` where the paired interval excludes zero."""
    return ["Within each run, paired 95% interval; higher or lower where it excludes zero:", "",
            *_said(findings, lambda f: f"{f.what.metric} {f.interval.kind.value} than {f.what.minus}"), ""]


def _said_of_published(study: Study, rows: list[PublishedRow]) -> list[str]:
    """Whether each published value lies inside the study's interval, or why there is none."""
    items = []
    for r in rows:
        if r.interval is None:
            continue
        shown = r.interval.text() if r.interval.exists else r.interval.number()
        if study.baseline is None:
            compared, value = (f"this study {spread(r.runs, r.decimals)} against the published "
                               f"{r.theirs:g}, a difference of {shown}"), "value"
        else:
            compared, value = f"difference to `{r.baseline}` {shown} here, {r.target:+.2f} published", "difference"
        verdict = {IntervalKind.ONE_RUN: "no interval exists with n = 1",
                   IntervalKind.NO_SPREAD: "no interval exists: no run varies",
                   IntervalKind.NOT_DEFINED: "no difference is defined: a side's runs do not report it"}.get(
            r.interval.kind, f"the published {value} lies {'inside' if r.inside() == 'yes' else 'outside'} this "
                             "study's 95% interval")
        items.append(f"- {r.dataset}, {r.configuration}, {r.metric}: {compared}; {verdict}.")
    return ["Beside the published numbers:", "", *items, ""] if items else []


def conclusions(study: Study, differences: list[Finding], pairs: list[Finding],
                published: list[PublishedRow]) -> list[str]:
    """The section "What the intervals say": the tables' intervals in words, each quoted as the tables print it."""
    said = [*(_said_of_differences(study, differences) if differences else []),
            *(_said_of_pairs(pairs) if pairs else []), *_said_of_published(study, published)]
    if not said:
        return []
    return ["## What the intervals say", "", *said]
