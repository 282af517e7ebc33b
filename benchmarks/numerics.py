"""What portable numerics cost: the train stage's epoch in ``numerics: portable`` against ``native``.

Run from the repository root after `dvc repro split`::

    python -m benchmarks.numerics [--epochs N] [--rounds R]

The libraries read their code paths when they load, so each mode trains in its own process
(``--child``), with params.yaml's model, batch size, seed and ``threads``; the processes
alternate, R rounds of N epochs each, so that both see the same machine load. Prints each
mode's median epoch, the code paths each reported (``vae.numerics.report``), and the ratio
portable/native.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from vae.numerics import MODES, PORTABLE_ENVIRONMENT


def child(mode: str, epochs: int) -> None:
    """Train ``epochs`` epochs in this process (its environment already chose the mode); print JSON."""
    import torch

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
    x, _ = load_images("data/processed/train.npz")
    settings = TrainingSettings.from_params(params)
    state = TrainState.new(VAEConfig.from_params(params), settings, torch.device("cpu"))
    seconds = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        train_epoch(state, x, epoch, settings, progress=False)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads(), **report(mode)}))


def mode_environment(mode: str) -> dict[str, str]:
    """This process's environment with the portable pins set (portable) or removed (native)."""
    env = {key: value for key, value in os.environ.items() if key not in PORTABLE_ENVIRONMENT}
    return env | PORTABLE_ENVIRONMENT if mode == "portable" else env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per mode, alternating")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.epochs)
        return
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            out = subprocess.run([sys.executable, "-m", "benchmarks.numerics", "--child", mode,
                                  "--epochs", str(args.epochs)], env=mode_environment(mode), check=True,
                                 capture_output=True, text=True).stdout
            runs[mode].append(json.loads(out.splitlines()[-1]))
    median = {mode: statistics.median(s for run in runs[mode] for s in run["seconds"]) for mode in MODES}
    for mode in MODES:
        last = runs[mode][-1]
        print(f"{mode:>8}: epoch {median[mode]:.2f} s (median of {args.rounds} x {args.epochs}), "
              f"{last['threads']} threads; MKL {last['mkl']}, ATen {last['aten']}, oneDNN {last['onednn']}, "
              f"OpenBLAS {', '.join(last['openblas'])}")
    print(f"portable/native: epoch {median['portable'] / median['native']:.2f}")


if __name__ == "__main__":
    main()
