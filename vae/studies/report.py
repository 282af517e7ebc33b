"""``make report``: a study's durable record (``docs/results/NAME.csv``) and its summary (``NAME.md``, ``NAME.png``).

The rows come from ``vae.studies.record``, the Markdown from ``vae.studies.summary`` (its
statistics in ``statistics``, comparisons in ``findings``, tables in ``table``, words in
``conclusions``) and the figure from ``vae.studies.figure``; this module writes the three files.
"""

from pathlib import Path

import pandas as pd

from vae.io import write_csv, write_figure, write_text
from vae.studies.experiments import Experiment
from vae.studies.figure import figure
from vae.studies.record import latest, merge, read_record, rows_from_experiments
from vae.studies.spec import Study
from vae.studies.summary import summary

RESULTS_DIR = Path("docs/results")


def write_report(study: Study, found: list[Experiment], results_dir: Path = RESULTS_DIR) -> pd.DataFrame:
    """Add ``found``'s finished runs to the study's CSV and rewrite its Markdown and PNG; return the latest rows
    (of each run under each protocol)."""
    csv = results_dir / f"{study.name}.csv"
    record = merge(read_record(csv), rows_from_experiments(study, found))
    runs = latest(record, protocols=True)
    states = {exp.name: exp.state for exp in found if exp.state != "success"}
    if len(record):
        write_csv(csv, record)
    write_text(results_dir / f"{study.name}.md", summary(study, runs, states))
    if len(runs) and any(m in runs.columns for m in study.metrics):
        write_figure(results_dir / f"{study.name}.png", figure(study, runs), dpi=110)
    return runs
