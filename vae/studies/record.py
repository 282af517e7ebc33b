"""A study's durable record, ``docs/results/NAME.csv``: one row per named run at one commit.

Each row holds the run's settings, where it ran (CPU, threads, torch) and every metric.
``make report`` adds the rows of the experiments it finds and keeps every earlier row, so a
study can be run in parts, on several days or machines; the summary is made from the latest
row of each run under each protocol (a run made again with other params, say more epochs, is a
second protocol: both stay in the summary, each its own row).
"""

from pathlib import Path
from typing import Any

import pandas as pd

from vae.studies.experiments import Experiment, code_version, environment
from vae.studies.spec import KNOWN_METRICS, Study

RUN_COLUMNS = ("experiment", "configuration", "dataset", "seed")
PROVENANCE_COLUMNS = ("commit", "code", "cpu", "threads", "torch")


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
    """The study's CSV as written (commits and code versions as text); empty where there is none yet."""
    return pd.read_csv(path, dtype={"commit": str, "code": str}) if path.exists() else pd.DataFrame()


def param_columns(record: pd.DataFrame) -> list[str]:
    """The columns of the params a run ran with: every column but its name, where it ran and its metrics
    (``iwae_k``, a param evaluate also writes as a metric, counts as a metric: its value is the same)."""
    other = {*RUN_COLUMNS, *PROVENANCE_COLUMNS, *KNOWN_METRICS}
    return [column for column in record.columns if column not in other]


def latest(record: pd.DataFrame, protocols: bool = False) -> pd.DataFrame:
    """The last row of each run (rows are in the order they were recorded: commits oldest first); with
    ``protocols``, the last row of each run under each set of params it ran with, so the report shows every
    protocol rather than silently the newest one."""
    if not len(record):
        return record
    return record.drop_duplicates(["experiment", *(param_columns(record) if protocols else [])], keep="last")
