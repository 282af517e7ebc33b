"""The cost of training with k samples: the IWAE paper's model, one step at k = 1, 5, 50, in float32 and bf16.

Run from the repository root after `dvc repro split`::

    python -m benchmarks.objective_cost [--steps 40] [--batch-size 100] [--ks 1 5 50]

The paper's model (784-200-200-50 tanh, binarized pixels, Adam eps 1e-4) trained with the
train stage's own ``train_epoch`` on the first ``steps * batch_size`` training images, every
objective in each precision (``32-true`` and ``bf16-mixed``) in turn, rounds alternating so that
all see the same machine load; a first round warms up and is not timed (the first bfloat16
products after start-up are slower). Prints, side by side for the two precisions, the median
milliseconds per step of each objective, its ratio to the same precision's one-sample ELBO, and
the seconds an epoch of 59,600 images (the paper's protocol's training set) would take; last,
each objective's bf16/fp32 step time (its matrices are small: 100 x 784 x 200 at most, k times
that in the decoder, so bfloat16 may gain less than at the default model's sizes).
"""

import argparse
import statistics
import time

import torch

from benchmarks import bf16_note
from vae.data.split import load_split, to_tensor
from vae.params import PRECISIONS
from vae.runtime.dvc_yaml import read_stage
from vae.runtime.machine import flush_subnormals
from vae.training import TrainingSettings, TrainState, train_epoch

PAPER_MODEL = {"hidden_dim": 200, "latent_dim": 50, "activation": "tanh", "likelihood": "binarized"}
PAPER_TRAIN_IMAGES = 59_600
ROUNDS = 5
Cell = tuple[str, int, str]  # objective, k, precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="steps per objective, precision and round")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 5, 50])
    args = parser.parse_args()
    flush_subnormals()
    cpu = torch.device("cpu")
    train_npz = next(d for d in read_stage("train").deps if d.endswith("/train.npz"))
    x = to_tensor(load_split(train_npz)[0][: args.steps * args.batch_size])
    objectives = [("elbo", 1)] + [(name, k) for k in args.ks if k > 1 for name in ("elbo", "iwae")]
    settings = {(name, k, precision): TrainingSettings(batch_size=args.batch_size, seed=0, adam_eps=1e-4,
                                                       objective=name, train_samples=k, precision=precision)
                for name, k in objectives for precision in PRECISIONS}
    states = {cell: TrainState.new(PAPER_MODEL, s, cpu) for cell, s in settings.items()}
    seconds: dict[Cell, list[float]] = {cell: [] for cell in settings}
    print(f"{torch.get_num_threads()} threads, {bf16_note(cpu)}, batch {args.batch_size}, "
          f"{args.steps} steps x {ROUNDS} rounds after one to warm up")
    for epoch in range(ROUNDS + 1):
        for cell, s in settings.items():
            start = time.perf_counter()
            train_epoch(states[cell], x, epoch + 1, s, progress=False)
            if epoch:
                seconds[cell].append((time.perf_counter() - start) / args.steps)
    report({cell: statistics.median(values) for cell, values in seconds.items()}, objectives, args.batch_size)


def report(step: dict[Cell, float], objectives: list[tuple[str, int]], batch_size: int) -> None:
    """One row per objective: each precision's ms/step, ratio to its k = 1 step and s/epoch, then bf16/fp32."""
    print(f"\n{'':<16}" + "".join(f"{precision:>27}" for precision in PRECISIONS))
    print(f"{'objective':<12}{'k':>4}" + f"{'ms/step':>10}{'x k=1':>8}{'s/epoch':>9}" * len(PRECISIONS)
          + f"{'bf16/fp32':>11}")
    for name, k in objectives:
        columns = ""
        for precision in PRECISIONS:
            s, base = step[(name, k, precision)], step[("elbo", 1, precision)]
            columns += f"{s * 1000:>10.1f}{s / base:>8.2f}{s * PAPER_TRAIN_IMAGES / batch_size:>9.1f}"
        print(f"{name:<12}{k:>4}{columns}{step[(name, k, 'bf16-mixed')] / step[(name, k, '32-true')]:>11.2f}")

if __name__ == "__main__":
    main()
