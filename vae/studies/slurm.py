"""A study on a SLURM cluster: one array task per run, each in its own clone, results home as DVC experiments.

DVC's queue runs on one machine and one repository cannot run two experiments at once, so
each task clones the git origin into ``WORKDIR/clones/RUN``, checks out the commit the study
was submitted from, pulls what DVC has (or downloads from ``$VAE_DATA_MIRROR``), sets the
run's params, runs ``dvc repro evaluate`` (``TARGET``), saves the result as the experiment RUN (``dvc exp
save``) and pushes it (``dvc exp push origin RUN``: git refs to the origin, outputs to the DVC
remote). A killed or preempted task that SLURM requeues finds its clone as it left it, and the
train stage resumes from the last completed epoch, bit for bit. ``make collect`` then pulls
every pushed experiment into any clone.

The job script is plain bash: ``bash JOB_SCRIPT INDEX`` runs run INDEX anywhere, which is
how clusters without SLURM (or a laptop) use it.
"""

import logging
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from vae.errors import UserError
from vae.studies.experiments import TARGET, command
from vae.studies.spec import Run, Study

log = logging.getLogger("vae")

SCRIPTS_DIR = Path(".slurm")  # gitignored: job scripts, and the default work folder
# A fault injected on a run's first attempt only, for tests: "RUN=SIGKILL@2.5" (see vae.interrupt).
FIRST_ATTEMPT_FAULT_ENV = "VAE_FIRST_ATTEMPT_SIGNAL"


@dataclass(frozen=True)
class SlurmOptions:
    partition: str = ""  # the cluster's default when empty
    cpus: int = 2  # --cpus-per-task; also each task's torch threads
    mem: str = "4G"
    time: str = "02:00:00"
    workdir: Path = SCRIPTS_DIR / "work"  # on a filesystem every node shares
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


def _case(index: int, run: Run) -> str:
    return f"  {index}) NAME={run.name} ;;"


def job_script(study: Study, commit: str, remote: str, options: SlurmOptions) -> str:
    """The bash script of one array task (``$SLURM_ARRAY_TASK_ID``, or its first argument)."""
    workdir = options.workdir.resolve()
    directives = [f"--job-name=vae-{study.name}", f"--cpus-per-task={options.cpus}", f"--mem={options.mem}",
                  f"--time={options.time}", f"--output={workdir}/logs/slurm-%A_%a.out"]
    directives += [f"--partition={options.partition}"] if options.partition else []
    directives += ["--requeue"] if options.requeue else ["--no-requeue"]
    cache = f"  dvc cache dir --local {shlex.quote(options.cache)}\n" if options.cache else ""
    runs = study.runs()
    return f"""#!/usr/bin/env bash
# Study {study.name} ({study.path}) at commit {commit}, written by `make slurm`.
# Task INDEX runs the study's run INDEX: `sbatch --array=...` this file, or `bash {{this file}} INDEX`.
{chr(10).join(f"#SBATCH {d}" for d in directives)}
set -euo pipefail
INDEX="${{1:-${{SLURM_ARRAY_TASK_ID:?give the run index as the first argument}}}}"
ORIGIN={shlex.quote(remote)}
COMMIT={commit}
WORKDIR={shlex.quote(str(workdir))}
case "$INDEX" in
{chr(10).join(_case(i, run) for i, run in enumerate(runs))}
  *) echo "error: study {study.name} has runs 0 to {len(runs) - 1}, not $INDEX" >&2; exit 2 ;;
esac
mkdir -p "$WORKDIR/logs" "$WORKDIR/clones"
exec >>"$WORKDIR/logs/$NAME.log" 2>&1  # appended: a requeued attempt follows the last one
ATTEMPT="${{SLURM_RESTART_COUNT:-0}}"
echo "[slurm] $NAME: run $INDEX, job ${{SLURM_ARRAY_JOB_ID:-none}}, attempt $ATTEMPT, $(hostname), $(date -u +%FT%TZ)"
export OMP_NUM_THREADS="${{SLURM_CPUS_PER_TASK:-{options.cpus}}}"
export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"  # the environment that submitted the study
FAULT="${{{FIRST_ATTEMPT_FAULT_ENV}:-}}"
if [ "$ATTEMPT" = 0 ] && [ "${{FAULT%%=*}}" = "$NAME" ]; then export VAE_SIGNAL_AT="${{FAULT#*=}}"; fi
if git ls-remote --exit-code "$ORIGIN" "refs/exps/${{COMMIT:0:2}}/${{COMMIT:2}}/$NAME" >/dev/null; then
  echo "[slurm] $NAME is already in the origin: nothing to do"; exit 0
fi
CLONE="$WORKDIR/clones/$NAME"
if [ ! -d "$CLONE/.git" ]; then  # a requeued task keeps its clone, and with it the saved epochs
  rm -rf "$CLONE"
  git clone -q "$ORIGIN" "$CLONE"
  git -C "$CLONE" checkout -q --detach "$COMMIT"
  cd "$CLONE"
{cache}  if ! dvc pull -q; then echo "[slurm] dvc pull was incomplete: the stages it lacks run here"; fi
fi
cd "$CLONE"
rm -f .dvc/tmp/rwlock  # the clone is this run's alone: a lock left by a killed attempt is stale
if ! dvc exp list --name-only 2>/dev/null | grep -qx "$NAME"; then
  # `dvc exp run` would first restore the baseline's outputs over the saved epochs, so the
  # run is `dvc repro` in the clone (the train stage resumes) saved as the experiment.
  python -m vae.studies set-params {study.name} "$NAME"
  dvc repro {TARGET}
  NEW=(); while IFS= read -r file; do NEW+=(-I "$file"); done < <(git ls-files --others --exclude-standard)
  dvc exp save -n "$NAME" "${{NEW[@]}}" {TARGET}  # what `dvc exp run` would commit, new small files included
fi
dvc exp push origin "$NAME"
echo "[slurm] $NAME: pushed, $(date -u +%FT%TZ)"
"""


def submit(study: Study, options: SlurmOptions, only: set[str] | None = None) -> tuple[Path, str | None]:
    """Write the job script and submit the runs the origin lacks (of those named in ``only``, if given);
    return the script and the job id.

    Raises ``UserError`` (after writing and printing the script) where there is no ``sbatch``.
    """
    commit = _git("rev-parse", "HEAD")
    if _git("status", "--porcelain", "--untracked-files=no"):
        raise UserError("the working tree has uncommitted changes, which the tasks would not see; "
                        "commit them (and push) first")
    remote = origin_url(options)
    unpushed = _git("rev-list", "HEAD", "--not", "--remotes")
    if unpushed:
        raise UserError(f"commit {commit[:12]} is not in any remote branch, so the tasks cannot check it out; "
                        "push it first (`git push origin HEAD`)")
    script = SCRIPTS_DIR / f"{study.name}.sh"
    SCRIPTS_DIR.mkdir(exist_ok=True)
    script.write_text(job_script(study, commit, remote, options))
    print(script.read_text(), flush=True)
    if shutil.which("sbatch") is None:
        raise UserError(f"sbatch is not on the PATH (no SLURM here): nothing submitted; the job script above "
                        f"({script}) runs one task as `bash {script} INDEX`")
    done = pushed_runs(remote, commit)
    wanted = [(i, run) for i, run in enumerate(study.runs()) if only is None or run.name in only]
    missing = [i for i, run in wanted if run.name not in done]
    log.info("%s: %d of %d runs are in the origin already", study.name, len(wanted) - len(missing), len(wanted))
    if not missing:
        log.info("nothing to submit; `make collect` pulls the results")
        return script, None
    options.workdir.mkdir(parents=True, exist_ok=True)
    (options.workdir / "logs").mkdir(exist_ok=True)
    array = ",".join(str(i) for i in missing)
    try:
        out = command("sbatch", "--parsable", f"--array={array}", *shlex.split(options.sbatch_args), str(script))
    except UserError as err:
        raise UserError(f"sbatch refused the job: {err}") from None
    job = out.strip().split(";")[0]
    log.info("submitted job %s: array %s (%d runs); logs in %s/logs/RUN.log", job, array, len(missing),
             options.workdir)
    return script, job


def collect(remote: str = "origin") -> None:
    """Pull every experiment pushed to ``remote`` (git refs and their DVC outputs) into this clone."""
    out = command("dvc", "exp", "pull", remote, "--all-commits")
    log.info("%s", out.strip() or f"pulled the experiments of {remote}")
