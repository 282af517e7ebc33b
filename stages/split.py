"""split: the seeded train/validation split plus the test set, as pickle-free train/val/test.npz.

Of the IDX files of MNIST or FashionMNIST, or (dataset_name: folder) of the images of
``image_folder``, decoded once, with a manifest.csv that traces every row to its file.
The files are written into a folder beside the output and moved into place together.
"""

import argparse
import logging

from vae.data.datasets import FOLDER
from vae.data.folder import make_folder_splits
from vae.data.split import make_splits
from vae.io import staged
from vae.runtime.cli import run_stage, stage_params


def main(args: argparse.Namespace) -> None:
    params = stage_params()
    with staged(args.out) as (out,):
        if params.dataset_name == FOLDER:
            sizes = make_folder_splits(params.image_folder, out, params)
        else:
            sizes = make_splits(args.raw, out, params.val_fraction, params.data_seed, params.train_subset)
    logging.getLogger("vae").info("wrote %s", ", ".join(f"{k}: {v} images" for k, v in sizes.items()))


if __name__ == "__main__":
    run_stage("split", main, "raw", "out")
