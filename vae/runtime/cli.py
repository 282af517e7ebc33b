"""What every stage script shares: its command line of paths, its params, and one error line.

dvc.yaml names every path once and passes each stage its inputs and outputs as
``--name path`` options; ``run_stage`` parses them, sets the process up (logging, the
subnormal switch, params.yaml's numerics and threads, clean Ctrl-C), runs the stage, and turns
a ``UserError``, an error of the environment (a full disk, a read-only folder) or Ctrl-C into one
line and an exit code.
"""

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from vae.errors import DamagedFile, UserError, one_line
from vae.io import check_outputs
from vae.numerics import configure_torch
from vae.params import Params, load_params
from vae.runtime import interrupt
from vae.runtime.dvc_yaml import PARAMS_FILE, read_stage, stage_writing
from vae.runtime.machine import flush_subnormals, peak_memory_mib

log = logging.getLogger("vae")
RESUMABLE = ("train",)  # stages that keep completed work when stopped (vae.runtime.record), and resume from it


def stage_params() -> Params:
    """params.yaml, validated: what DVC passes every stage."""
    try:
        return load_params(PARAMS_FILE)
    except UserError as err:
        raise UserError(f"{err}{_left_by_exp_run()}") from None


def _left_by_exp_run() -> str:
    """Under a `dvc exp run` in the workspace, what DVC leaves in params.yaml and how to get the committed file back.

    DVC writes the ``-S`` values into params.yaml before it runs any stage and does not undo them
    when a stage fails. Where the new value is as wide as the old one, `git status` may not show
    the change and `git checkout -- params.yaml` may leave it (tested with DVC 3.67);
    `git show HEAD:params.yaml > params.yaml` rewrites the file whatever git believes.
    """
    if not os.environ.get("DVC_EXP_NAME") or Path(os.environ.get("DVC_ROOT", "")).resolve() != Path.cwd():
        return ""  # not an experiment, or one run in a temporary copy (--queue, --temp): the workspace is untouched
    return ("; a value set with `dvc exp run -S` stays in params.yaml after this failure (`git status` may not "
            "show it): `git show HEAD:params.yaml > params.yaml` restores the committed file")


def _restore_hint(stage: str) -> str:
    """Under `dvc repro` (which sets DVC_STAGE), how to get back the outputs DVC deleted before the stage ran."""
    if os.environ.get("DVC_STAGE") != stage:
        return ""
    try:
        return read_stage(stage).restore_hint()
    except (UserError, OSError):
        return ""


def _outputs(stage: str, args: argparse.Namespace) -> list[Path]:
    """The outputs dvc.yaml declares for ``stage`` that its command line names (none where dvc.yaml is unreadable)."""
    try:
        declared = {Path(out) for out in read_stage(stage).outs}
    except (UserError, OSError):
        return []
    return [path for path in vars(args).values() if isinstance(path, Path) and path in declared]


def _interrupted(stage: str) -> str:
    """The line for a stage stopped by Ctrl-C or SIGTERM: what it kept, what DVC removed, how to get it back."""
    try:
        outputs = read_stage(stage).outs
    except (UserError, OSError):
        outputs = ("its outputs",)  # run outside the repository: say what holds for every stage
    if stage in RESUMABLE:
        return f"{stage} interrupted; the completed epochs are saved; rerun `dvc repro` to continue from the last one"
    if not outputs:
        return f"{stage} interrupted; it writes nothing; rerun `dvc repro`"
    earlier = _restore_hint(stage) or "; its earlier outputs are as they were"
    return (f"{stage} interrupted before its outputs were complete, so it wrote none (it writes them together at "
            f"the end){earlier}; rerun `dvc repro` to write them")


def run_stage(name: str, main: Callable[[argparse.Namespace], None], *paths: str, computes: bool = True) -> None:
    """Parse ``--<path> PATH`` for each name in ``paths``, run ``main(args)``, report errors in one line.

    ``computes=False`` (check-params) leaves PyTorch unloaded and unconfigured, so that the stage
    DVC runs before every changed experiment starts without the seconds that importing it takes.
    """
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name.replace('-', '_')}",
                                     description=sys.modules["__main__"].__doc__)
    for path in paths:
        parser.add_argument(f"--{path.replace('_', '-')}", type=Path, required=True, metavar="PATH")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s", stream=sys.stderr)
    start = time.perf_counter()
    finished = False
    try:
        interrupt.install()  # Ctrl-C and SIGTERM (a CI timeout, `kill`) both stop cleanly
        check_outputs(_outputs(name, args))  # a blocked output path fails before any work or deletion
        params = stage_params()
        if computes:
            flush_subnormals()
            configure_torch(params.numerics, params.threads)  # stages/__init__.py pinned the rest before torch loaded
        main(args)
        finished = True
        interrupt.ignore()  # done: a Ctrl-C from here on changes nothing, so it is no failure
    except KeyboardInterrupt:
        if not finished:
            print(f"error: {_interrupted(name)}", file=sys.stderr)
            sys.exit(130)
    except Exception as err:
        if isinstance(err, DamagedFile) and err.stage is None:
            err.stage = stage_writing(err.path)  # the core reads no dvc.yaml: name the stage that remakes it
        message = one_line(err)
        if message is None:
            raise  # a bug: keep its traceback
        print(f"error: {message}{_restore_hint(name)}", file=sys.stderr)
        sys.exit(1)
    peak = peak_memory_mib()
    log.info("done in %.1f s%s", time.perf_counter() - start, "" if peak is None else f", peak memory {peak:.0f} MiB")
