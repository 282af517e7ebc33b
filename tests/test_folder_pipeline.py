"""Real images no one here drew, through the folder dataset: MNIST as PNGs, scikit-learn's digits and photos."""

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from sklearn.datasets import load_digits, load_sample_images

from tests.commands import git_files, run
from tests.conftest import REPO_ROOT, SMALL
from vae.data.folder import ingest


def write_class_folders(root: Path, images: np.ndarray, labels: np.ndarray, suffix: str = ".png") -> None:
    """Each image as a file in the folder of its label."""
    for i, (image, label) in enumerate(zip(images, labels)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / str(label) / f"{i:05d}{suffix}")


def test_mnist_as_pngs_ingests_to_exactly_the_idx_pixels(tmp_path, mnist_test_set):
    """PNG is lossless and 28 needs no resize: the same pixels, image for image, with their labels."""
    images, labels = mnist_test_set
    write_class_folders(tmp_path / "mnist", images, labels)
    data = ingest(tmp_path / "mnist", 1, 28, 2)
    assert data.images.shape == images.shape
    as_rows = Counter((int(y), x.tobytes()) for x, y in zip(images, labels))
    assert Counter((int(y), x.tobytes()) for x, y in zip(data.images, data.labels)) == as_rows


def project_copy(tmp_path: Path, params: dict) -> Path:
    """The project's git files in a fresh git repository, with ``params`` over SMALL over params.yaml."""
    repo = tmp_path / "repo"
    for name in git_files(REPO_ROOT):
        if not name.startswith(("reports/", "models/")):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, repo / name)
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump({**raw, **SMALL, **params}, sort_keys=False))
    run(repo, "git", "init", "-q")
    return repo


def commit(repo: Path) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "step")


@pytest.mark.e2e
def test_scikit_learns_digits_run_the_whole_pipeline_and_one_new_image_reruns_what_it_touches(tmp_path):
    digits = load_digits()
    repo = project_copy(tmp_path, {"dataset_name": "folder", "image_folder": "data/digits", "train_subset": 0,
                                   "fd_images": 100, "tsne_subset": 100, "test_fraction": 0.2})
    write_class_folders(repo / "data/digits", (digits.images * 255 / 16).round().astype(np.uint8), digits.target)
    commit(repo)
    out = run(repo, "dvc", "repro")
    assert "1797 were smaller than 28 (upscaled)" in out
    assert "Data and pipelines are up to date" in run(repo, "dvc", "status")
    metrics = run(repo, "dvc", "metrics", "show")
    assert "classifier_test_accuracy" in metrics and "fd_samples" in metrics
    shutil.copy(repo / "data/digits/0/00000.png", repo / "data/digits/0/99999.png")
    status = run(repo, "dvc", "status")
    assert "split:" in status and "modified:           data/digits" in status
    (repo / "data/digits/0/99999.png").unlink()
    assert "Data and pipelines are up to date" in run(repo, "dvc", "status")


@pytest.mark.e2e
def test_rgb_photo_crops_train_the_conv_model_and_draw_colour_grids(tmp_path):
    repo = project_copy(tmp_path, {"dataset_name": "folder", "image_folder": "data/photos", "channels": 3,
                                   "image_size": 32, "architecture": "conv", "train_subset": 0, "batch_size": 32})
    for name, photo in zip(("china", "flower"), load_sample_images().images):
        crops = [photo[y:y + 96, x:x + 96] for y in range(0, photo.shape[0] - 96, 48)
                 for x in range(0, photo.shape[1] - 96, 48)]
        write_class_folders(repo / "data/photos", np.stack(crops), np.array([name] * len(crops)), ".jpg")
    commit(repo)
    run(repo, "dvc", "repro", "sample")
    for grid in ("prior_samples", "reconstructions"):
        image = np.asarray(Image.open(repo / f"reports/sample/{grid}.png"))
        assert image.ndim == 3 and (image[..., 0] != image[..., 1]).any()  # colour, not grey in RGB
