"""What portable numerics cost: each computing stage's epoch in ``numerics: portable`` against ``native``.

Run from the repository root after `dvc repro split`::

    python -m benchmarks.numerics [--epochs N] [--rounds R] [--classifier-images M]

The libraries read their code paths when they load, so each mode runs in its own process
(``--child``), with params.yaml's models, batch sizes, seeds and ``threads``; the processes
alternate, R rounds, so that both modes see the same machine load. Each round times N epochs
of the train stage's VAE and N epochs of the classifier stage's CNN on the first M training
images (its whole epoch takes as long per image), and the matrix products alone of a train
epoch (the VAE's linear layers at its batch size: forward, input and weight gradients), each on
its mode's kernels: OpenBLAS's through numpy in portable, MKL's through ``torch.mm`` in native.
Prints the code paths each mode reported (``vae.numerics.report``), then per row the median of
each mode and portable/native side by side, of the medians and of each mode's fastest epoch (on
a shared machine the least disturbed one: other tenants only ever add time): where train's ratio
exceeds the products', the rest is what happens around the products (threads, copies).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from vae.numerics import MODES, PORTABLE_ENVIRONMENT

if TYPE_CHECKING:  # each child imports torch after its mode's environment is set
    import torch

STAGES = ("train", "classifier")
ROWS = (*STAGES, "products")


def child(mode: str, epochs: int, classifier_images: int) -> None:
    """Time ``epochs`` epochs of each stage in this process (its environment already chose the mode); print JSON."""
    import torch

    from vae.classifier import train_classifier
    from vae.data.split import load_images
    from vae.model import VAEConfig
    from vae.numerics import configure_torch, report
    from vae.params import load_params
    from vae.runtime.dvc_yaml import PARAMS_FILE
    from vae.runtime.machine import flush_subnormals
    from vae.training import TrainingSettings, TrainState, train_epoch

    params = load_params(PARAMS_FILE)
    configure_torch(mode, params.threads)
    flush_subnormals()
    x, labels = load_images("data/processed/train.npz")
    y = torch.as_tensor(labels, dtype=torch.int64)
    settings = TrainingSettings.from_params(params)
    state = TrainState.new(VAEConfig.from_params(params), settings, torch.device("cpu"))
    seconds: dict[str, list[float]] = {row: [] for row in ROWS}
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        train_epoch(state, x, epoch, settings, progress=False)
        seconds["train"].append(time.perf_counter() - start)
    for _ in range(epochs):
        start = time.perf_counter()
        train_classifier(x[:classifier_images], y[:classifier_images], 1, params.classifier_batch_size,
                         params.classifier_lr, params.data_seed, progress=False)
        seconds["classifier"].append(time.perf_counter() - start)
    steps = -(-len(x) // settings.batch_size)
    for _ in range(epochs):
        seconds["products"].append(steps * products_of_a_step(state.model, settings.batch_size, mode))
    print(json.dumps({"seconds": seconds, "threads": params.threads, **report(mode)}))


def products_of_a_step(model: "torch.nn.Module", batch: int, mode: str, repeats: int = 50) -> float:
    """Seconds of one training step's matrix products on ``mode``'s kernels, without PyTorch's dispatch around them."""
    import numpy as np
    import torch

    operands = []
    for layer in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
        n_out, n_in = layer.weight.shape
        for m, k, n in ((batch, n_in, n_out), (batch, n_out, n_in), (n_out, batch, n_in)):  # y, dx, dW
            operands.append((torch.rand(m, k), torch.rand(k, n), torch.empty(m, n)))

    def step() -> None:
        for a, b, out in operands:
            if mode == "portable":
                np.matmul(a.numpy(), b.numpy(), out=out.numpy())
            else:
                torch.mm(a, b, out=out)

    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def mode_environment(mode: str) -> dict[str, str]:
    """This process's environment with the portable pins set (portable) or removed (native)."""
    env = {key: value for key, value in os.environ.items() if key not in PORTABLE_ENVIRONMENT}
    return env | PORTABLE_ENVIRONMENT if mode == "portable" else env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per mode, alternating")
    parser.add_argument("--classifier-images", type=int, default=12_800, help="the classifier's epoch's images")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.epochs, args.classifier_images)
        return
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            out = subprocess.run([sys.executable, "-m", "benchmarks.numerics", "--child", mode,
                                  "--epochs", str(args.epochs), "--classifier-images", str(args.classifier_images)],
                                 env=mode_environment(mode), check=True, capture_output=True, text=True).stdout
            runs[mode].append(json.loads(out.splitlines()[-1]))
    for mode in MODES:
        last = runs[mode][-1]
        print(f"{mode:>8}: {last['threads']} threads; products {last['products']}; MKL {last['mkl']}, "
              f"ATen {last['aten']}, oneDNN {last['onednn']}")
    print(f"median epoch of {args.rounds} x {args.epochs}; classifier on {args.classifier_images} images; "
          f"products: train's, kernels alone")
    print(f"{'epoch':<11} {'portable':>9} {'native':>9} {'portable/native':>16} {'of fastest':>11}")
    for row in ROWS:
        seconds = {mode: [s for run in runs[mode] for s in run["seconds"][row]] for mode in MODES}
        median = {mode: statistics.median(seconds[mode]) for mode in MODES}
        fastest = min(seconds["portable"]) / min(seconds["native"])
        print(f"{row:<11} {median['portable']:>8.2f}s {median['native']:>8.2f}s "
              f"{median['portable'] / median['native']:>16.2f} {fastest:>11.2f}")


if __name__ == "__main__":
    main()
