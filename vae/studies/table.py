"""The report's Markdown tables: intervals per configuration and metric, and the study beside the published numbers."""

from vae.studies.findings import Finding, PublishedRow, baseline_phrase, by_group
from vae.studies.spec import Study
from vae.studies.statistics import spread


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines, then an empty line."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def interval_table(findings: list[Finding]) -> list[str]:
    """One row per configuration (``configuration − baseline`` where each has its own), one column per metric or
    pair: the findings' cells (bold only where resolved)."""
    grouped = by_group(findings)
    return markdown_table(["dataset", "configuration − baseline" if findings[0].versus else "configuration",
                           *(f.what.label for f in grouped[0][2])],
                          [[d, c, *(f.cell() for f in fs)] for d, c, fs in grouped])


def published_table(study: Study, rows: list[PublishedRow]) -> list[str]:
    """The study's numbers beside the published ones: without a baseline, the study's mean minus the published
    value; with one, each configuration's difference to it beside the paper's difference."""
    heading = [f"## Beside the published numbers: {study.source}", ""]
    header = ["dataset", "configuration", "metric", "n", "this study", "published"]
    cells = [[r.dataset, r.configuration, r.metric, str(len(r.runs)), spread(r.runs, r.decimals),
              f"{r.theirs:g}"] for r in rows]
    if study.baseline is None:
        return [*heading, *markdown_table([*header, "this study − published"],
                                          [[*row, r.interval.text() if r.interval.exists else r.interval.number()]
                                           for row, r in zip(cells, rows)])]
    to = baseline_phrase(study, "", "its baseline")
    return [*heading,
            f"Differences are to {baseline_phrase(study)}, here with their 95% Welch interval; the last column says "
            "whether the published difference lies inside that interval.", "",
            *markdown_table([*header, f"− {to}, this study", f"− {to}, published", "published inside"],
                            [[*row, *((r.interval.cell(), f"{r.target:+.2f}", r.inside()) if r.interval
                                      else ("", "", ""))]
                             for row, r in zip(cells, rows)])]
