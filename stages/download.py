"""download: fetch and verify the four IDX files of ``dataset_name`` into data/raw/."""

from vae.cli import run_stage
from vae.data.datasets import DATASETS
from vae.data.download import download_dataset, mirror_from_env
from vae.params import load_params

OUT_DIR = "data/raw"


def main() -> None:
    params = load_params()
    download_dataset(DATASETS[params.dataset_name], OUT_DIR, mirror_from_env())


if __name__ == "__main__":
    run_stage("download", main)
