"""``python -m vae.studies queue|report|slurm NAME`` and ``collect``: what ``make study``, ``make report``,
``make slurm`` and ``make collect`` run (``set-params`` is a step of each SLURM task)."""

import argparse
import logging
import sys
import time
from pathlib import Path

from vae.errors import UserError, one_line
from vae.studies.experiments import code_version, experiments, queue
from vae.studies.record import latest, read_record
from vae.studies.report import RESULTS_DIR, write_report
from vae.studies.slurm import SlurmOptions, collect, submit
from vae.studies.spec import load_study, select, write_params

log = logging.getLogger("vae")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vae.studies", description=__doc__)
    actions = p.add_subparsers(dest="action", required=True)
    only = argparse.ArgumentParser(add_help=False)
    only.add_argument("--runs", nargs="*", default=[], metavar="PATTERN",
                      help="only the runs whose names match a shell pattern (variants-fashion-mnist-conv-*)")
    threads = argparse.ArgumentParser(add_help=False)
    threads.add_argument("--threads", type=int, default=None, metavar="N",
                         help="the runs' `threads` param (params.yaml's if not given)")
    actions.add_parser("queue", parents=[only, threads],
                       help="queue the study's runs that are not done as DVC experiments"
                       ).add_argument("study", help="a file studies/NAME.yaml")
    actions.add_parser("report", help="add the finished runs to docs/results/NAME.csv, write NAME.md and .png"
                       ).add_argument("study")
    slurm = actions.add_parser("slurm", parents=[only],
                               help="submit the runs the git origin lacks as a SLURM job array")
    slurm.add_argument("study")
    defaults = SlurmOptions()
    slurm.add_argument("--partition", default=defaults.partition)
    slurm.add_argument("--cpus", type=int, default=defaults.cpus, help="CPUs (and torch threads) per task")
    slurm.add_argument("--mem", default=defaults.mem)
    slurm.add_argument("--time", default=defaults.time)
    slurm.add_argument("--workdir", type=Path, default=defaults.workdir, help="a folder every node shares")
    slurm.add_argument("--remote", default=defaults.remote, help="git URL the tasks clone and push to (origin)")
    slurm.add_argument("--cache", default=defaults.cache, help="a shared DVC cache folder for every clone")
    slurm.add_argument("--sbatch-args", default=defaults.sbatch_args, help="more sbatch options, as one string")
    slurm.add_argument("--requeue", type=int, choices=(0, 1), default=1, help="1: SLURM may requeue a task")
    actions.add_parser("collect", help="pull every experiment pushed to origin (dvc exp pull --all-commits)")
    set_params = actions.add_parser("set-params", parents=[threads],
                                    help="write one run's params into params.yaml (a SLURM task's step)")
    set_params.add_argument("study")
    set_params.add_argument("run", help="the run's name, e.g. smoke-mnist-notebook-s1")
    return p


def _threads(threads: int | None) -> dict[str, int]:
    """The ``threads`` override of ``--threads`` (a run's thread count is part of its params: it changes the bytes)."""
    if threads is not None and threads < 1:
        raise UserError(f"--threads {threads} is not an integer > 0; give the CPU threads of each run")
    return {} if threads is None else {"threads": threads}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[study] %(message)s", stream=sys.stderr)
    start = time.perf_counter()
    try:
        if args.action == "collect":
            collect()
            return 0
        study = load_study(args.study)
        if args.action == "queue":
            record = latest(read_record(RESULTS_DIR / f"{study.name}.csv"))
            done = record[record["code"] == code_version()].to_dict("records") if len(record) else []
            only = select(study, args.runs)
            queued = queue(study, done, only, _threads(args.threads))
            log.info("%d of %d runs queued; start them with `dvc queue start`, follow with `dvc queue status`",
                     len(queued), len(only))
        elif args.action == "set-params":
            runs = {run.name: run for run in study.runs()}
            if args.run not in runs:
                raise UserError(f"study {study.name} has no run {args.run!r}; its runs are {', '.join(runs)}")
            write_params("params.yaml", runs[args.run].overrides | _threads(args.threads))
        elif args.action == "report":
            runs = write_report(study, experiments(all_commits=True))
            log.info("%d of %d runs (%d rows) in %s/%s.md (%.1f s)", runs["experiment"].nunique() if len(runs) else 0,
                     len(study.runs()), len(runs), RESULTS_DIR, study.name, time.perf_counter() - start)
        else:
            submit(study, SlurmOptions(args.partition, args.cpus, args.mem, args.time, args.workdir, args.remote,
                                       args.cache, args.sbatch_args, bool(args.requeue)), select(study, args.runs))
    except (UserError, OSError) as err:
        message = one_line(err, rerun="the command")
        if message is None:
            raise  # not the environment's: a bug, with its traceback
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
