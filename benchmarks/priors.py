"""What a VampPrior and a second stochastic layer cost: seconds per epoch of each model of studies/priors.yaml.

Run from the repository root after `dvc repro split`::

    python -m benchmarks.priors [--batches N] [--threads T] [--numerics portable|native]

Each model is the VampPrior paper's (gated dense layers of 300 units, z = 40, binarized pixels,
batch 100), with the standard prior or the VampPrior (K = 500), and one or two stochastic layers.
Every model trains the same N batches of the train split after one warm-up batch, in turns, in
one process; the time is scaled to an epoch of 50,000 images (the paper's split). Prints each
model's seconds per epoch and its ratio to the one-layer standard-prior model's.
"""

import argparse
import os
import subprocess
import sys
import time

from benchmarks.numerics import mode_environment

MODELS = {"standard": {}, "vampprior": {"prior": "vampprior"}, "two-layers": {"stochastic_layers": 2},
          "two-layers-vampprior": {"prior": "vampprior", "stochastic_layers": 2}}
SHARED = {"hidden_dim": 300, "latent_dim": 40, "activation": "gated", "likelihood": "binarized"}
EPOCH_IMAGES, BATCH = 50_000, 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="timed batches per model and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--numerics", default="portable")
    args = parser.parse_args()
    if os.environ.get("VAE_BENCH_CHILD") != args.numerics:  # the libraries pick their code paths when they load
        env = mode_environment(args.numerics) | {"VAE_BENCH_CHILD": args.numerics}
        sys.exit(subprocess.run([sys.executable, "-m", "benchmarks.priors", *sys.argv[1:]], env=env).returncode)

    import torch

    from vae import numerics
    from vae.data.split import load_images
    from vae.training import TrainingSettings, TrainState, train_epoch

    numerics.configure_torch(args.numerics, args.threads)
    x, _ = load_images("data/processed/train.npz")
    x = x[:BATCH * args.batches]
    settings = TrainingSettings(batch_size=BATCH, lr=5e-4)
    states = {name: TrainState.new(SHARED | extra, settings, torch.device("cpu")) for name, extra in MODELS.items()}
    for state in states.values():
        train_epoch(state, x[:BATCH], 1, settings, progress=False)
    seconds: dict[str, list[float]] = {name: [] for name in MODELS}
    for _ in range(args.rounds):
        for name, state in states.items():
            start = time.perf_counter()
            train_epoch(state, x, 1, settings, progress=False)
            seconds[name].append((time.perf_counter() - start) * EPOCH_IMAGES / len(x))
    base = min(seconds["standard"])
    print(f"{args.numerics}, {args.threads} threads, {args.batches} batches of {BATCH} x {args.rounds} rounds, "
          f"scaled to {EPOCH_IMAGES:,} images (the fastest round):")
    for name, times in seconds.items():
        print(f"{name:>22}: {min(times):5.1f} s per epoch ({min(times) / base:.2f} x standard)")


if __name__ == "__main__":
    main()
