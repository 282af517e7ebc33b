"""download: fetch and verify the four IDX files of ``dataset_name``.

A folder of images (dataset_name: folder) needs nothing: its output is left as it is
(created empty where absent), and the split stage reads ``image_folder``.
"""

import argparse
import logging

from vae.data.datasets import DATASETS, FOLDER
from vae.data.download import download_dataset, mirror_from_env
from vae.runtime.cli import run_stage, stage_params


def main(args: argparse.Namespace) -> None:
    params = stage_params()
    if params.dataset_name == FOLDER:
        args.out.mkdir(parents=True, exist_ok=True)
        logging.getLogger("vae").info("dataset_name: %s: the split stage reads image_folder; nothing to download",
                                      FOLDER)
        return
    download_dataset(DATASETS[params.dataset_name], args.out, mirror_from_env())


if __name__ == "__main__":
    run_stage("download", main, "out")
