#!/usr/bin/env bash
# One run of a study, in its own clone, saved and pushed as the DVC experiment of its name
# (docs/clusters.md). `make slurm` submits this file as a SLURM job array, task i running the
# study's run i; `bash slurm_job.sh INDEX`, with the same environment, runs run INDEX on any
# machine (`make slurm` prints that command).
#
# Argument: INDEX, the run's number from 0 (default: $SLURM_ARRAY_TASK_ID).
# Environment (`make slurm` passes it on with `sbatch --export`):
#   VAE_JOB_RUNS     the run table: a file of run names, run i on line i + 1
#   VAE_JOB_STUDY    the study (studies/NAME.yaml) whose params each run takes
#   VAE_JOB_COMMIT   the commit every run checks out
#   VAE_JOB_ORIGIN   the git URL each run clones, and pushes its experiment to
#   VAE_JOB_WORKDIR  where clones/RUN and logs/RUN.log go: a folder every node shares
#   VAE_JOB_TARGET   the stage `dvc repro` runs
#   VAE_JOB_THREADS  torch threads (OMP_NUM_THREADS) where SLURM_CPUS_PER_TASK is unset
#   VAE_JOB_CACHE    optional: a DVC cache folder every clone shares
#   VAE_JOB_BIN      optional: a folder put first on PATH (the project's environment)
set -euo pipefail

fail() {
  echo "error: $*" >&2
  exit 2
}

INDEX="${1:-${SLURM_ARRAY_TASK_ID:-}}"
[[ "$INDEX" =~ ^[0-9]+$ ]] || fail "give the run's index (0, 1, ...) as the first argument, or run as a SLURM array task"
for var in VAE_JOB_RUNS VAE_JOB_STUDY VAE_JOB_COMMIT VAE_JOB_ORIGIN VAE_JOB_WORKDIR VAE_JOB_TARGET VAE_JOB_THREADS; do
  [ -n "${!var:-}" ] || fail "$var is not set; run this script with the environment that \`make slurm\` prints"
done
[ -r "$VAE_JOB_RUNS" ] || fail "cannot read the run table $VAE_JOB_RUNS; its folder must be shared with the machine that ran \`make slurm\`"
mapfile -t RUNS <"$VAE_JOB_RUNS"
((INDEX < ${#RUNS[@]})) || fail "study $VAE_JOB_STUDY has runs 0 to $((${#RUNS[@]} - 1)), not $INDEX"
NAME="${RUNS[INDEX]}"

mkdir -p "$VAE_JOB_WORKDIR/logs" "$VAE_JOB_WORKDIR/clones"
exec >>"$VAE_JOB_WORKDIR/logs/$NAME.log" 2>&1 # appended: a requeued attempt follows the last one
echo "[slurm] $NAME: run $INDEX, job ${SLURM_ARRAY_JOB_ID:-none}, attempt ${SLURM_RESTART_COUNT:-0}, $(hostname), $(date -u +%FT%TZ)"
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-$VAE_JOB_THREADS}"
if [ -n "${VAE_JOB_BIN:-}" ]; then export PATH="$VAE_JOB_BIN:$PATH"; fi

if git ls-remote --exit-code "$VAE_JOB_ORIGIN" "refs/exps/${VAE_JOB_COMMIT:0:2}/${VAE_JOB_COMMIT:2}/$NAME" >/dev/null; then
  echo "[slurm] $NAME is already in the origin: nothing to do"
  exit 0
fi
CLONE="$VAE_JOB_WORKDIR/clones/$NAME"
if [ ! -d "$CLONE/.git" ]; then # a requeued task keeps its clone, and with it the saved epochs
  rm -rf "$CLONE"
  git clone -q "$VAE_JOB_ORIGIN" "$CLONE"
  cd "$CLONE"
  git checkout -q --detach "$VAE_JOB_COMMIT"
  if [ -n "${VAE_JOB_CACHE:-}" ]; then dvc cache dir --local "$VAE_JOB_CACHE"; fi
  dvc pull -q || echo "[slurm] dvc pull was incomplete: the stages it lacks run here"
fi
cd "$CLONE"
rm -f .dvc/tmp/rwlock # the clone is this run's alone: a lock left by a killed attempt is stale
if ! dvc exp list --name-only 2>/dev/null | grep -x "$NAME" >/dev/null; then
  # `dvc exp run` would first restore the baseline's outputs over the saved epochs, so the
  # run is `dvc repro` in the clone (the train stage resumes) saved as the experiment.
  python -m vae.studies set-params --threads "$OMP_NUM_THREADS" "$VAE_JOB_STUDY" "$NAME"
  dvc repro "$VAE_JOB_TARGET"
  NEW=()
  while IFS= read -r file; do NEW+=(-I "$file"); done < <(git ls-files --others --exclude-standard)
  dvc exp save -n "$NAME" "${NEW[@]}" "$VAE_JOB_TARGET" # what `dvc exp run` would commit, new small files included
fi
dvc exp push origin "$NAME"
echo "[slurm] $NAME: pushed, $(date -u +%FT%TZ)"
