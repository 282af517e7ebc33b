"""download: fetch and verify the four IDX files of ``dataset_name``."""

import argparse

from vae.data.datasets import DATASETS
from vae.data.download import download_dataset, mirror_from_env
from vae.runtime.cli import run_stage, stage_params


def main(args: argparse.Namespace) -> None:
    params = stage_params()
    download_dataset(DATASETS[params.dataset_name], args.out, mirror_from_env())


if __name__ == "__main__":
    run_stage("download", main, "out")
