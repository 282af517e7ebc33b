"""The train stage's run key: a hash of everything DVC keys the stage on, read from dvc.yaml itself.

The train stage reuses its saved training state only if the state's run key matches, so the
stage and DVC can never disagree about whether old work is still valid. The one exception is
``num_epochs``: the first N epochs of a longer run are a shorter run, so lowering it reuses
the saved weights and raising it continues.
"""

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch

from vae.errors import UserError
from vae.params import Params
from vae.runtime.dvc_yaml import DVC_YAML, read_stage

NOT_IN_RUN_KEY = ("num_epochs",)  # a shorter run is a prefix of a longer one


def _hash_path(h: "hashlib._Hash", path: Path) -> None:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        h.update(str(file.relative_to(path) if path.is_dir() else file).encode())
        h.update(hashlib.sha256(file.read_bytes()).digest())


def run_key(stage: str, params: Params, device: torch.device, dvc_yaml: str | Path = DVC_YAML) -> str:
    """A hash of the stage's command, every dependency and every param it lists in ``dvc_yaml``.

    ``device`` enters as the device type it resolved to (``auto`` and ``cpu`` train the
    same on a CPU machine); ``num_epochs`` does not enter (see the module docstring).
    """
    spec = read_stage(stage, dvc_yaml)
    values = asdict(params) | {"device": device.type}
    settings = {key: values[key] for key in spec.params if key not in NOT_IN_RUN_KEY}
    h = hashlib.sha256(json.dumps({"cmd": spec.cmd, "params": settings}, sort_keys=True).encode())
    for dep in spec.deps:
        if not Path(dep).exists():
            raise UserError(f"{dep}, a dependency of {stage} in {dvc_yaml}, is missing; run `dvc repro`")
        _hash_path(h, Path(dep))
    return h.hexdigest()
