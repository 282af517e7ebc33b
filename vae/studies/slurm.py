"""A study on a SLURM cluster: one array task per run, each in its own clone, results home as DVC experiments.

DVC's queue runs on one machine and one repository cannot run two experiments at once, so
each task clones the git origin into ``WORKDIR/clones/RUN``, checks out the commit the study
was submitted from, pulls what DVC has (or downloads from ``$VAE_DATA_MIRROR``), sets the
run's params, runs ``dvc repro evaluate`` (``TARGET``), saves the result as the experiment RUN (``dvc exp
save``) and pushes it (``dvc exp push origin RUN``: git refs to the origin, outputs to the DVC
remote). A killed or preempted task that SLURM requeues finds its clone as it left it, and the
train stage resumes from the last completed epoch, bit for bit. ``make collect`` then pulls
every pushed experiment into any clone.

The job script, ``slurm_job.sh`` beside this module, is the same file for every study: this
module writes the study's run table (one run name per line) into the work folder, computes the
script's environment and submits it with ``sbatch --array --export``. ``bash slurm_job.sh INDEX``
with that environment runs run INDEX anywhere, which is how clusters without SLURM (or a laptop)
use it.
"""

import logging
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from vae.errors import UserError
from vae.io import write_text
from vae.studies.experiments import TARGET, command
from vae.studies.spec import Study

log = logging.getLogger("vae")

JOB_SCRIPT = Path(__file__).with_name("slurm_job.sh")


@dataclass(frozen=True)
class SlurmOptions:
    partition: str = ""  # the cluster's default when empty
    cpus: int = 2  # --cpus-per-task; also each task's torch threads
    mem: str = "4G"
    time: str = "02:00:00"
    workdir: Path = Path(".slurm/work")  # on a filesystem every node shares
    remote: str = ""  # the git origin the tasks clone and push to; `git remote get-url origin` when empty
    cache: str = ""  # a shared DVC cache folder for every clone (`dvc cache dir`), or each clone its own
    sbatch_args: str = ""  # anything else for sbatch, e.g. "--account=lab --qos=short"
    requeue: bool = True  # let SLURM requeue a preempted or failed-node task (it resumes)


def _git(*args: str) -> str:
    return command("git", *args).strip()


def origin_url(options: SlurmOptions) -> str:
    if options.remote:
        return options.remote
    try:
        return _git("remote", "get-url", "origin")
    except UserError:
        raise UserError("this repository has no git remote 'origin' for the tasks to clone and push to; "
                        "add one (`git remote add origin URL`) or set SLURM_REMOTE=URL") from None


def pushed_runs(remote: str, commit: str) -> set[str]:
    """Names of the experiments of ``commit`` that the origin already holds (refs/exps/ab/cdef.../NAME)."""
    listing = _git("ls-remote", remote, f"refs/exps/{commit[:2]}/{commit[2:]}/*")
    return {line.rsplit("/", 1)[1] for line in listing.splitlines() if line}


def write_run_table(study: Study, commit: str, workdir: Path) -> Path:
    """Write the study's run names, run i on line i + 1, where every task can read them; return the file.

    Named by the commit, whose study file fixes the runs: a resubmission from another commit never
    changes the table under a pending task.
    """
    path = workdir.resolve() / f"{study.name}-{commit[:12]}.runs"
    write_text(path, "".join(f"{run.name}\n" for run in study.runs()))
    return path


def job_environment(study: Study, commit: str, remote: str, runs: Path, options: SlurmOptions) -> dict[str, str]:
    """The values the job script reads (its header lists them)."""
    environment = {"VAE_JOB_RUNS": str(runs), "VAE_JOB_STUDY": study.name, "VAE_JOB_COMMIT": commit,
                   "VAE_JOB_ORIGIN": remote, "VAE_JOB_WORKDIR": str(options.workdir.resolve()),
                   "VAE_JOB_TARGET": TARGET, "VAE_JOB_THREADS": str(options.cpus),
                   "VAE_JOB_BIN": str(Path(sys.executable).parent)}  # the environment that submitted the study
    return environment | ({"VAE_JOB_CACHE": options.cache} if options.cache else {})


def by_hand(environment: dict[str, str]) -> str:
    """The shell command that runs one run of the job (INDEX) on any machine, SLURM or not."""
    assignments = "".join(f"{name}={shlex.quote(value)} \\\n" for name, value in environment.items())
    return f"{assignments}bash {shlex.quote(str(JOB_SCRIPT))} INDEX"


def export_option(environment: dict[str, str]) -> str:
    """``--export=ALL,NAME=value,...``: the job's values on top of the submitting environment.

    sbatch splits the list at commas, so a value cannot hold one.
    """
    for name, value in environment.items():
        if "," in value:
            raise UserError(f"{name}={value} holds a comma, which `sbatch --export` cannot pass on; "
                            "choose a folder or URL without one")
    return "--export=ALL," + ",".join(f"{name}={value}" for name, value in environment.items())


def sbatch_options(study: Study, options: SlurmOptions) -> list[str]:
    """The job's sbatch options from ``options`` (``sbatch_args`` left out: it comes last, to override)."""
    logs = options.workdir.resolve() / "logs"
    found = [f"--job-name=vae-{study.name}", f"--cpus-per-task={options.cpus}", f"--mem={options.mem}",
             f"--time={options.time}", f"--output={logs}/slurm-%A_%a.out",
             "--requeue" if options.requeue else "--no-requeue"]
    return found + ([f"--partition={options.partition}"] if options.partition else [])


def submit(study: Study, options: SlurmOptions, only: set[str] | None = None) -> str | None:
    """Submit the runs the origin lacks (of those named in ``only``, if given) as one job array; return its id,
    or None where the origin holds them all.

    Prints the command that runs one run by hand first; raises ``UserError`` after it where there is no
    ``sbatch``.
    """
    commit = _git("rev-parse", "HEAD")
    if _git("status", "--porcelain", "--untracked-files=no"):
        raise UserError("the working tree has uncommitted changes, which the tasks would not see; "
                        "commit them (and push) first")
    remote = origin_url(options)
    if _git("rev-list", "HEAD", "--not", "--remotes"):
        raise UserError(f"commit {commit[:12]} is not in any remote branch, so the tasks cannot check it out; "
                        "push it first (`git push origin HEAD`)")
    runs = study.runs()
    environment = job_environment(study, commit, remote, write_run_table(study, commit, options.workdir), options)
    print(by_hand(environment), flush=True)
    if shutil.which("sbatch") is None:
        raise UserError(f"sbatch is not on the PATH (no SLURM here): nothing submitted; the command above runs "
                        f"run INDEX (0 to {len(runs) - 1}) of the study on this or any machine")
    done = pushed_runs(remote, commit)
    wanted = [(i, run) for i, run in enumerate(runs) if only is None or run.name in only]
    missing = [i for i, run in wanted if run.name not in done]
    log.info("%s: %d of %d runs are in the origin already", study.name, len(wanted) - len(missing), len(wanted))
    if not missing:
        log.info("nothing to submit; `make collect` pulls the results")
        return None
    (options.workdir / "logs").mkdir(parents=True, exist_ok=True)
    array = ",".join(str(i) for i in missing)
    args = ["sbatch", "--parsable", f"--array={array}", *sbatch_options(study, options), export_option(environment),
            *shlex.split(options.sbatch_args), str(JOB_SCRIPT)]
    log.info("%s", shlex.join(args))
    try:
        out = command(*args)
    except UserError as err:
        raise UserError(f"sbatch refused the job: {err}") from None
    job = out.strip().split(";")[0]
    log.info("submitted job %s: array %s (%d runs); logs in %s/logs/RUN.log", job, array, len(missing),
             options.workdir)
    return job


def collect(remote: str = "origin") -> None:
    """Pull every experiment pushed to ``remote`` (git refs and their DVC outputs) into this clone."""
    out = command("dvc", "exp", "pull", remote, "--all-commits")
    log.info("%s", out.strip() or f"pulled the experiments of {remote}")
