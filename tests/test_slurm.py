"""A study on a real one-node SLURM cluster: array tasks in their own clones, a killed task requeued
and resumed bit for bit, results collected as DVC experiments, and a resubmission that submits nothing.

The cluster (munge, slurmctld, slurmd; Debian's packages, as CI installs them) runs as root with
its configuration, state and logs in a temporary folder (``SLURM_CONF``). Every wait is on the
job's state, with a bound. Skipped, with the reason, where the packages or root are missing.
The kill comes from the test hook in tests/faults, put on the tasks' PYTHONPATH (sbatch passes the
submitting environment on). The job script's own checks (shellcheck, its error lines) need no cluster.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import dvc.api
import pytest

from tests.commands import git_files, run
from tests.conftest import no_data_source_reason, signal_env
from vae.errors import UserError
from vae.studies.slurm import JOB_SCRIPT, SlurmOptions, submit
from vae.studies.spec import load_study, write_params

REPO = Path(__file__).resolve().parent.parent
# One pytest-xdist worker runs this file: one SLURM cluster at a time on this host, its project built once.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("slurm")]
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue")
KILLED = "smoke-mnist-notebook-s2"  # killed in its second epoch on the first attempt
NOTEBOOK_RUNS = "smoke-mnist-notebook-*"  # the runs submitted: half the study (test_pipeline.py runs it all)
TIMEOUT_S = 900


def test_the_job_script_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed: apt-get install shellcheck")
    proc = subprocess.run(["shellcheck", str(JOB_SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_job_script_says_in_one_line_what_it_lacks(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VAE_JOB_", "SLURM_"))}
    job = {f"VAE_JOB_{name}": "x" for name in ("STUDY", "COMMIT", "ORIGIN", "WORKDIR", "TARGET", "THREADS")}

    def error(*args: str, **environment: str) -> str:
        proc = subprocess.run(["bash", str(JOB_SCRIPT), *args], capture_output=True, text=True,
                              env={**clean, **environment})
        assert proc.returncode == 2, proc.stderr
        return proc.stderr

    assert error() == "error: give the run's index (0, 1, ...) as the first argument, or run as a SLURM array task\n"
    assert error("1", **job) == ("error: VAE_JOB_RUNS is not set; run this script with the environment that "
                                 "`make slurm` prints\n")
    missing = tmp_path / "missing.runs"
    assert error("1", VAE_JOB_RUNS=str(missing), **job).startswith(f"error: cannot read the run table {missing}")
    (tmp_path / "x.runs").write_text("x-a\nx-b\n")
    assert error("2", VAE_JOB_RUNS=str(tmp_path / "x.runs"), **job) == "error: study x has runs 0 to 1, not 2\n"


def missing_reason() -> str | None:
    absent = [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]
    if absent:
        return f"SLURM is not installed ({', '.join(absent)} missing): apt-get install slurmctld slurmd munge"
    if os.geteuid() != 0:
        return "the one-node SLURM cluster of this test runs as root"
    return no_data_source_reason()


def wait_until(check, what: str, timeout_s: float = TIMEOUT_S) -> str:
    """Poll ``check()`` (a string when done, else None) until it is done; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result is not None:
            return result
        time.sleep(1)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def command(*args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)
    assert not check or proc.returncode == 0, f"{' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


def start_munge() -> None:
    if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0:
        return  # already running
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    command("chown", "munge:munge", "/run/munge")
    command("chown", "-R", "munge:munge", "/var/log/munge", "/var/lib/munge", "/etc/munge")
    command("su", "-s", "/bin/sh", "munge", "-c", "munged --force")
    wait_until(lambda: "" if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0
               else None, "munged", 30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    start_munge()
    root = tmp_path_factory.mktemp("slurm")
    host = socket.gethostname().split(".")[0]
    for folder in ("state", "spool"):
        (root / folder).mkdir()
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=local", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SchedulerType=sched/builtin",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "ReturnToService=2",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool", f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.pid", f"SlurmctldLogFile={root}/slurmctld.log",
        f"SlurmdLogFile={root}/slurmd.log", "JobAcctGatherType=jobacct_gather/none", "MpiDefault=none",
        "MinJobAge=3600", f"NodeName={host} CPUs=2 RealMemory=8000 State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""]))
    env = {"SLURM_CONF": str(conf)}
    command("slurmctld", env=env)
    command("slurmd", env=env)
    try:
        wait_until(lambda: "idle" if "idle" in command("sinfo", "-h", "-o", "%t", env=env, check=False) else None,
                   "the node to be idle", 60)
        yield env
    finally:
        for pidfile in ("slurmd.pid", "slurmctld.pid"):
            if (root / pidfile).exists():
                subprocess.run(["kill", (root / pidfile).read_text().strip()], check=False)


def task_states(job: str, env: dict[str, str]) -> dict[str, str]:
    """{array task id: JobState} from `scontrol show job` (accounting is off: no sacct)."""
    out = command("scontrol", "-o", "show", "job", job, env=env, check=False)
    states = {}
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "ArrayTaskId" in fields:
            states[fields["ArrayTaskId"]] = fields["JobState"]
    return states


def finished(job: str, env: dict[str, str]) -> str | None:
    states = task_states(job, env)
    if states and all(s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL") for s in states.values()):
        return ",".join(f"{t}:{s}" for t, s in sorted(states.items()))
    return None


@pytest.fixture(scope="module")
def cluster_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project with a bare git origin and a local-folder DVC remote, pushed."""
    root = tmp_path_factory.mktemp("cluster-project")
    repo = root / "project"
    for name in git_files(REPO):
        if not name.startswith(("reports/", "models/", "docs/results/")) and name != "dvc.lock":
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    run(root, "git", "init", "-q", "--bare", "--initial-branch=main", str(root / "origin.git"))
    run(repo, "git", "init", "-q")
    run(repo, "dvc", "remote", "add", "-d", "store", str(root / "dvc-store"))
    # the data and the classifier every run shares, made once and pushed: each task `dvc pull`s them. At
    # one thread, as the tasks (SLURM_CPUS=1) run: the thread count is part of the classifier's DVC key.
    write_params(repo / "params.yaml", load_study("smoke", repo / "studies", repo / "params.yaml").params
                 | {"threads": 1})
    run(repo, "dvc", "repro", "classifier")
    run(repo, "dvc", "push")
    run(repo, "git", "add", "-A")
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project")
    run(repo, "git", "remote", "add", "origin", str(root / "origin.git"))
    run(repo, "git", "push", "-q", "origin", "HEAD:main")
    return repo


def make(repo: Path, *args: str, env: dict[str, str], fails: bool = False) -> str:
    venv = Path(sys.executable).parent.parent
    return run(repo, "make", "-o", f"{venv}/.installed", f"VENV={venv}", "STUDY=smoke", *args, env=env, fails=fails)


def kill_once(run_name: str, at: str, marker: Path) -> dict[str, str]:
    """The environment that makes the tests/faults hook send a signal at ``at`` (SIGNAME@EPOCH.BATCH) to
    the run ``run_name`` (its clone's folder) on its first attempt only (``marker`` is made when it fires)."""
    return signal_env(at, only_in=run_name, once=marker)


def test_a_study_on_slurm_comes_home_as_experiments_with_a_requeued_task_resumed(cluster, cluster_project) -> None:
    """Two of the smoke study's four runs (`RUNS=smoke-mnist-notebook-*`) as a job array, one killed and requeued;
    collected, reported, and the resumed model the same as an uninterrupted run's."""
    settings = ["SLURM_CPUS=1", "SLURM_MEM=1500M", f"SLURM_WORKDIR={cluster_project.parent / 'work'}",
                f"RUNS={NOTEBOOK_RUNS}"]
    marker = cluster_project.parent / "killed-once"
    out = make(cluster_project, "slurm", *settings, env={**cluster, **kill_once(KILLED, "SIGKILL@2.3", marker)})
    assert f"--requeue --export=ALL,VAE_JOB_RUNS={cluster_project.parent / 'work'}/smoke-" in out  # the sbatch command
    assert f"{cluster_project}/vae/studies/slurm_job.sh" in out
    job = out.split("submitted job ", 1)[1].split(":", 1)[0]
    first = wait_until(lambda: finished(job, cluster), f"job {job}")
    names = [r.name for r in load_study("smoke", cluster_project / "studies", cluster_project / "params.yaml").runs()]
    index = str(names.index(KILLED))
    assert f"{index}:FAILED" in first and first.count("COMPLETED") == 1 and first.count(":") == 2, first
    log = cluster_project.parent / "work" / "logs" / f"{KILLED}.log"
    assert "attempt 0" in log.read_text() and marker.exists()

    command("scontrol", "requeue", f"{job}_{index}", env=cluster)
    command("scontrol", "update", f"JobId={job}_{index}", "StartTime=now", env=cluster)  # no requeue delay
    wait_until(lambda: finished(job, cluster) if "attempt 1" in log.read_text() else None,
               f"task {job}_{index} after its requeue")
    text = log.read_text()
    assert task_states(job, cluster)[index] == "COMPLETED", text
    assert "Running stage 'train'" in text and "Running stage 'classifier'" not in text, text  # pulled, not redone
    assert "attempt 1" in text and "resuming from models/train_state.pt (epoch 1" in text, text

    collector = cluster_project.parent / "collector"
    run(cluster_project.parent, "git", "clone", "-q", str(cluster_project.parent / "origin.git"), str(collector))
    make(collector, "collect", env=cluster)
    shown = run(collector, "dvc", "exp", "show", "--json")
    assert "smoke-mnist-notebook-s1" in shown and KILLED in shown and "smoke-mnist-latent-3" not in shown
    make(collector, "report", env=cluster)
    assert ("**2 runs** of 4 planned; missing: smoke-mnist-latent-3-s1 (not run), smoke-mnist-latent-3-s2 (not run)."
            in (collector / "docs/results/smoke.md").read_text())

    # the killed-and-resumed run's model, against the same run done without interruption
    resumed = dvc.api.read("models/model.pt", repo=str(collector), rev=KILLED, mode="rb")
    reference = cluster_project.parent / "reference"
    run(cluster_project.parent, "git", "clone", "-q", str(cluster_project.parent / "origin.git"), str(reference))
    run(reference, "dvc", "pull", "--with-deps", "classifier")  # the shared data and classifier; it trains here
    study_run = next(r for r in load_study("smoke", reference / "studies", reference / "params.yaml").runs()
                     if r.name == KILLED)
    run(reference, "dvc", "exp", "run", "-n", "uninterrupted", *study_run.set_params(), "evaluate")
    assert (reference / "models/model.pt").read_bytes() == resumed

    again = make(cluster_project, "slurm", *settings, env=cluster)
    assert "2 of 2 runs are in the origin already" in again and "nothing to submit" in again
    assert "submitted job" not in again

    # the printed command runs one run without SLURM: here, one the origin holds already
    by_hand = again[again.index("VAE_JOB_RUNS="):again.index(" INDEX") + len(" INDEX")]
    subprocess.run(["bash", "-c", by_hand.replace(" INDEX", f" {index}")], check=True, timeout=120,
                   env={k: v for k, v in os.environ.items() if not k.startswith("SLURM_")})
    assert log.read_text().rstrip().endswith(f"[slurm] {KILLED} is already in the origin: nothing to do")


def test_without_sbatch_the_command_for_one_run_is_printed_and_one_line_says_so(cluster_project, monkeypatch,
                                                                               capsys) -> None:
    monkeypatch.chdir(cluster_project)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    study = load_study("smoke")
    with pytest.raises(UserError) as err:
        submit(study, SlurmOptions(workdir=cluster_project.parent / "nowhere"))
    assert str(err.value) == ("sbatch is not on the PATH (no SLURM here): nothing submitted; the command above "
                              "runs run INDEX (0 to 3) of the study on this or any machine")
    by_hand = capsys.readouterr().out.strip()
    assert by_hand.startswith("VAE_JOB_RUNS=") and by_hand.endswith(f"bash {JOB_SCRIPT} INDEX")
    runs = (cluster_project.parent / "nowhere").glob("smoke-*.runs")
    assert [path.read_text().split() for path in runs] == [[run.name for run in study.runs()]]
    proc = subprocess.run(["bash", "-c", by_hand.replace(" INDEX", " 4")], capture_output=True, text=True)
    assert (proc.returncode, proc.stderr) == (2, "error: study smoke has runs 0 to 3, not 4\n")
