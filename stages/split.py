"""split: the seeded train/validation split plus the test set, as pickle-free train/val/test.npz."""

import argparse
import logging

from vae.cli import run_stage
from vae.data.split import make_splits
from vae.params import load_params


def main(args: argparse.Namespace) -> None:
    params = load_params()
    sizes = make_splits(args.raw, args.out, params.val_fraction, params.data_seed, params.train_subset)
    logging.getLogger("vae").info("wrote %s", ", ".join(f"{k}: {v} images" for k, v in sizes.items()))


if __name__ == "__main__":
    run_stage("split", main, "raw", "out")
