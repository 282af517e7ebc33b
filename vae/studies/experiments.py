"""A study's runs as DVC experiments: read them (``dvc exp show --json``) and queue the missing ones.

A run is *done* when an experiment of its name and params exists at the current code (or is
queued or running), or when the study's CSV holds a row of it made with the current code: so
``make study`` resumes a half-finished study and never queues a run twice.
"""

import hashlib
import json
import logging
import subprocess
from dataclasses import dataclass
from typing import Any

from vae.errors import UserError
from vae.runtime.dvc_yaml import read_stage
from vae.studies.spec import Run, Study

log = logging.getLogger("vae")

# What decides a run's numbers besides its params: the code and the pipeline, read from git
# (this package only queues and reads runs, so editing it changes no result).
CODE_PATHS = ("vae", "stages", "dvc.yaml", "params.yaml", "requirements.txt")
NOT_CODE = "vae/studies/"
TARGET = "evaluate"  # a study's runs reproduce the metrics (evaluate and what it needs), not the figures


@dataclass(frozen=True)
class Experiment:
    name: str
    rev: str  # the experiment's commit ("" while queued)
    baseline: str  # the commit it was run from
    state: str  # success, queued, running or failed
    params: dict[str, Any]
    metrics: dict[str, Any]  # every metrics file's values, merged (their keys are distinct)


def command(*args: str) -> str:
    """Run a command and return its stdout; a missing program or a failure is one ``UserError`` line."""
    try:
        proc = subprocess.run(args, capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError(f"{args[0]} is not on the PATH; activate the project's environment "
                        "(`source .venv/bin/activate`) or use the make targets") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or [f"exit code {proc.returncode}"]
        raise UserError(f"`{' '.join(args[:4])} ...` failed: {lines[-1]}")
    return proc.stdout


def code_version(commit: str = "HEAD") -> str:
    """A short hash of the files under ``CODE_PATHS`` at ``commit``: equal for commits that differ only in
    docs, tests or the study machinery, which change no run's numbers."""
    listing = command("git", "ls-tree", "-r", commit, "--", *CODE_PATHS)
    files = [line for line in listing.splitlines() if not line.split("\t", 1)[1].startswith(NOT_CODE)]
    return hashlib.sha256("\n".join(files).encode()).hexdigest()[:12]


def parse_exp_show(rows: list[dict[str, Any]]) -> list[Experiment]:
    """The experiments of ``dvc exp show --json`` output (baselines and the workspace left out)."""
    found = []
    for row in rows:
        for exp_range in row.get("experiments") or []:
            state = (exp_range.get("executor") or {}).get("state") or "success"
            for rev in exp_range.get("revs") or []:
                data = rev.get("data") or {}
                metrics: dict[str, Any] = {}
                for entry in (data.get("metrics") or {}).values():
                    metrics |= entry.get("data") or {}
                params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
                found.append(Experiment(name=rev.get("name") or exp_range.get("name") or "",
                                        rev=rev.get("rev") if state != "queued" else "",
                                        baseline=row["rev"], state=state, params=params, metrics=metrics))
    return found


def oldest_first(dates: dict[str, int]) -> list[str]:
    """Commits by their commit date (``dates``: commit -> seconds since the epoch), oldest first; equal dates by
    hash, so the order is the same on every call."""
    return sorted(dates, key=lambda commit: (dates[commit], commit))


def baselines() -> list[str]:
    """The commits that experiments were run from (their refs are refs/exps/ab/cdef.../NAME), and HEAD, oldest
    first: a run done at two commits then has its newest row last, which is the one the report keeps."""
    refs = command("git", "for-each-ref", "--format=%(refname)", "refs/exps").split()
    found = {"".join(ref.split("/")[2:4]) for ref in refs if len(ref.split("/")) == 5}
    commits = found | {command("git", "rev-parse", "HEAD").strip()}
    shown = command("git", "log", "--no-walk=unsorted", "--format=%H %ct", *sorted(commits)).split()
    return oldest_first({commit: int(date) for commit, date in zip(shown[::2], shown[1::2])})


def experiments(all_commits: bool = False) -> list[Experiment]:
    """This repository's experiments: of HEAD, or of every commit that has some, oldest commit first.

    ``dvc exp show -A`` would read every commit of the history (47 s for 90 commits on 2 cores);
    asking for the experiments' own baselines reads only those. DVC lists them in an order of its own,
    so they are put in the order of ``baselines()`` here.
    """
    commits = baselines() if all_commits else []
    out = command("dvc", "exp", "show", "--json", "-n", "1", *(arg for rev in commits for arg in ("--rev", rev)))
    order = {commit: i for i, commit in enumerate(commits)}
    return sorted(parse_exp_show(json.loads(out)), key=lambda exp: order.get(exp.baseline, len(order)))


def environment(exp: Experiment) -> dict[str, Any]:
    """The CPU, thread count and torch version a finished experiment trained with ({} if unknown).

    The train stage writes them to the output of its named ``environment.json`` (git-tracked:
    ``cache: false``), so they are read from the experiment's commit.
    """
    path = next(out for out in read_stage("train").outs if out.endswith("environment.json"))
    proc = subprocess.run(["git", "show", f"{exp.rev}:{path}"], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def same_params(run: Run, params: dict[str, Any]) -> bool:
    return all(key in params and params[key] == value for key, value in run.overrides.items())


def queue(study: Study, done_rows: list[dict[str, Any]], only: set[str] | None = None,
          extra: dict[str, Any] | None = None) -> list[Run]:
    """Queue every run of ``study`` not done yet (of those named in ``only``, if given); return the queued runs.

    ``extra``: params set for every run besides the study's own (``threads``).

    ``done_rows``: rows of the study's CSV made with the current code (``code_version()``).
    """
    at_head = {exp.name: exp for exp in experiments() if exp.state != "failed"}
    recorded = {row["experiment"]: row for row in done_rows}
    queued = []
    for run in study.runs():
        if only is not None and run.name not in only:
            continue
        exp = at_head.get(run.name)
        if exp is not None:
            if not same_params(run, exp.params):
                raise UserError(f"experiment {run.name} exists with other params than {study.path} now gives it; "
                                f"remove it (`dvc exp remove {run.name}`) or rename the configuration")
            log.info("%s: %s, skipped", run.name, "done" if exp.state == "success" else exp.state)
            continue
        if run.name in recorded and same_params(run, recorded[run.name]):
            log.info("%s: in the study's CSV with this code, skipped", run.name)
            continue
        extra_args = [arg for key, value in (extra or {}).items() for arg in ("-S", f"{key}={value}")]
        command("dvc", "exp", "run", "--queue", "-n", run.name, *run.set_params(), *extra_args, TARGET)
        log.info("%s: queued", run.name)
        queued.append(run)
    return queued
