"""The cost of training with k samples: the IWAE paper's model, one step at k = 1, 5, 50.

Run from the repository root after `dvc repro split`::

    python -m benchmarks.objective_cost [--steps 40] [--batch-size 100] [--ks 1 5 50]

The paper's model (784-200-200-50 tanh, binarized pixels, Adam eps 1e-4) trained with the
train stage's own ``train_epoch`` on the first ``steps * batch_size`` training images, every
objective in turn, rounds alternating so that all see the same machine load. Prints the
median milliseconds per step of each objective, its ratio to the one-sample ELBO's, and the
seconds an epoch of 59,600 images (the paper's protocol's training set) would take.
"""

import argparse
import statistics
import time

import torch

from vae.cli import flush_subnormals
from vae.data.split import load_split, to_tensor
from vae.pipeline import read_stage
from vae.training import Schedule, TrainState, train_epoch

PAPER_MODEL = {"hidden_dim": 200, "latent_dim": 50, "activation": "tanh", "likelihood": "binarized"}
PAPER_TRAIN_IMAGES = 59_600
ROUNDS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="steps per objective and round")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 5, 50])
    args = parser.parse_args()
    flush_subnormals()
    train_npz = next(d for d in read_stage("train").deps if d.endswith("/train.npz"))
    x = to_tensor(load_split(train_npz)[0][: args.steps * args.batch_size])
    cells = [("elbo", 1)] + [(name, k) for k in args.ks if k > 1 for name in ("elbo", "iwae")]
    states = {cell: TrainState.new(PAPER_MODEL, 1e-3, 0, torch.device("cpu"), 1e-4) for cell in cells}
    seconds: dict[tuple[str, int], list[float]] = {cell: [] for cell in cells}
    print(f"{torch.get_num_threads()} threads, batch {args.batch_size}, {args.steps} steps x {ROUNDS} rounds")
    for epoch in range(1, ROUNDS + 1):
        for cell in cells:
            start = time.perf_counter()
            train_epoch(states[cell], x, args.batch_size, epoch, progress=False,
                        schedule=Schedule(objective=cell[0], train_samples=cell[1]))
            seconds[cell].append((time.perf_counter() - start) / args.steps)
    base = statistics.median(seconds[("elbo", 1)])
    print(f"\n{'objective':<12}{'k':>4}{'ms/step':>10}{'x k=1':>8}{'s/epoch':>10}")
    for (name, k), values in seconds.items():
        step = statistics.median(values)
        print(f"{name:<12}{k:>4}{step * 1000:>10.1f}{step / base:>8.2f}"
              f"{step * PAPER_TRAIN_IMAGES / args.batch_size:>10.1f}")


if __name__ == "__main__":
    main()
