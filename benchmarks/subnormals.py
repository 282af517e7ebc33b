"""Subnormal floats in the default training run: where they are, and what flushing them to zero changes.

Run from the repository root after `dvc repro split`::

    python -m benchmarks.subnormals [--epochs 10] [-S key=value ...]

Trains params.yaml's model (with ``-S`` overrides, checked like params.yaml) twice from the
same seed with the train stage's own loop and settings (its learning rate is the schedule's
first), once with subnormals kept (IEEE gradual underflow) and once flushed to zero (what every
stage does, ``vae.runtime.machine.flush_subnormals``), and prints per epoch: both epochs' times,
and after the unflushed epoch the number of subnormal values in every tensor that holds any
(weights, their gradients, Adam's two moments, and each layer's output on the first training batch).
At the end: whether the two runs' weights are bit for bit equal.
"""

import argparse
import time
from collections import Counter

import torch
import yaml

from vae.data.split import load_split, to_tensor
from vae.model import VAEConfig
from vae.params import validate
from vae.runtime.dvc_yaml import PARAMS_FILE, read_stage
from vae.runtime.machine import flush_subnormals
from vae.training import TrainingSettings, TrainState, logit_of_mean, train_epoch

TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32, 1.18e-38


def subnormal_count(t: torch.Tensor) -> int:
    return int(((t != 0) & (t.abs() < TINY)).sum())


def census(state: TrainState, xb: torch.Tensor) -> Counter:
    """Subnormals per tensor: parameters, gradients and Adam moments now, layer outputs on ``xb``."""
    counts: Counter = Counter()
    model, optimizer = state.model, state.optimizer
    for name, p in model.named_parameters():
        counts[f"{name}"] = subnormal_count(p)
        counts[f"{name}.grad"] = subnormal_count(p.grad) if p.grad is not None else 0
        for moment in ("exp_avg", "exp_avg_sq"):
            counts[f"{name}.{moment}"] = subnormal_count(optimizer.state[p][moment])
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: counts.update({f"{n} output": subnormal_count(o)}))
             for n, m in model.named_modules() if n and not list(m.children())]
    with torch.no_grad():
        model.decoder.logits(model.encoder(xb)[0])
    for hook in hooks:
        hook.remove()
    return Counter({k: v for k, v in counts.items() if v})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("-S", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a param to change, as `dvc exp run -S` takes it (e.g. -S architecture=conv)")
    args = parser.parse_args()
    raw = yaml.safe_load(PARAMS_FILE.read_text())
    for override in args.overrides:
        key, _, value = override.partition("=")
        raw[key] = yaml.safe_load(value)
    p = validate(raw, f"{PARAMS_FILE} with " + (" ".join(args.overrides) or "no overrides"))
    settings = TrainingSettings.from_params(p)
    train_npz = next(d for d in read_stage("train").deps if d.endswith("/train.npz"))
    x = to_tensor(load_split(train_npz)[0])
    bias = logit_of_mean(x) if p.output_bias_init == "train_mean" else None
    config = VAEConfig.from_params(p)
    runs = {flush: TrainState.new(config, settings, torch.device("cpu"), bias) for flush in (False, True)}
    print(f"{torch.get_num_threads()} threads; {config}, batch {p.batch_size}, {len(x)} images")
    for epoch in range(1, args.epochs + 1):
        seconds = {}
        for flush, state in runs.items():
            flush_subnormals(flush)
            start = time.perf_counter()
            train_epoch(state, x, epoch, settings, progress=False)
            seconds[flush] = time.perf_counter() - start
        flush_subnormals(False)
        counts = census(runs[False], x[:p.batch_size])
        print(f"epoch {epoch:2d}: kept {seconds[False]:6.2f} s, flushed {seconds[True]:6.2f} s | subnormals: "
              + (", ".join(f"{name} {n}" for name, n in counts.most_common()) or "none"), flush=True)
    a, b = (runs[f].model.state_dict() for f in (False, True))
    same = all(torch.equal(a[k], b[k]) for k in a)
    print(f"weights after epoch {args.epochs}: {'bit for bit equal' if same else 'DIFFERENT'} "
          "with and without the flush")


if __name__ == "__main__":
    main()
