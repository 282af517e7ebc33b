"""Studies: many runs of the pipeline that differ only in their settings and seeds, and their report.

A study is a small YAML file under ``studies/`` (``vae.studies.spec``): configurations (each a
set of ``-S`` overrides), datasets and seeds. ``python -m vae.studies queue NAME`` (``make
study``) queues every run that is not done yet as a named DVC experiment
(``vae.studies.experiments``); ``python -m vae.studies report NAME`` (``make report``) adds the
finished runs to ``docs/results/NAME.csv``, the study's durable record, and summarizes that
file with intervals (``vae.studies.report``).

This package runs outside the DAG: it queues and reads experiments, it is no stage's dependency.
"""
