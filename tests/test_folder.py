"""A folder of images as a dataset (vae.data.folder): layout, decoding, conversion, the manifest and bad input."""

import csv
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vae.data.folder import MANIFEST, ingest, make_folder_splits
from vae.data.split import load_split
from vae.errors import UserError
from vae.params import validate

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def params():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.update(dataset_name="folder", val_fraction=0.2, test_fraction=0.2)
    return validate(raw)


def grey(value: int, size: tuple[int, int] = (28, 28)) -> Image.Image:
    return Image.fromarray(np.full(size[::-1], value, dtype=np.uint8))


def write_classes(root: Path, counts: dict[str, int], suffix: str = ".png") -> None:
    """``counts[name]`` grey images per class folder, class ``i`` (sorted) at grey level 10 * i + image."""
    for c, name in enumerate(sorted(counts)):
        (root / name).mkdir(parents=True)
        for i in range(counts[name]):
            grey(10 * c + i).save(root / name / f"{i:03d}{suffix}")


def read_manifest(folder: Path) -> list[dict[str, str]]:
    with open(folder / MANIFEST) as f:
        return list(csv.DictReader(f))


def test_class_folders_are_labels_in_sorted_order_and_the_manifest_traces_every_row(tmp_path, params):
    write_classes(tmp_path / "img", {"b_cat": 10, "a_dog": 10, "c_owl": 10})
    out = tmp_path / "out"
    out.mkdir()
    sizes = make_folder_splits(tmp_path / "img", out, params)
    assert sizes == {"train": 20, "val": 4, "test": 6}
    manifest = read_manifest(out)
    assert len(manifest) == 30 and {m["class"] for m in manifest} == {"a_dog", "b_cat", "c_owl"}
    for split in sizes:
        images, labels = load_split(out / f"{split}.npz")
        index = np.load(out / f"{split}.npz")["index"]
        for image, label, row in zip(images, labels, index):
            m = manifest[row]
            assert m["split"] == split and int(m["label"]) == label
            assert ["a_dog", "b_cat", "c_owl"][label] == m["class"] == Path(m["path"]).parent.name
            assert (image == 10 * label + int(Path(m["path"]).stem)).all()  # the file's own pixels


def test_the_test_cut_is_seeded(tmp_path, params):
    write_classes(tmp_path / "img", {"a": 20})
    cuts = []
    for seed in (1, 1, 2):
        out = tmp_path / f"out{len(cuts)}"
        out.mkdir()
        make_folder_splits(tmp_path / "img", out, replace(params, data_seed=seed))
        cuts.append(sorted(np.load(out / "test.npz")["index"].tolist()))
    assert cuts[0] == cuts[1] != cuts[2]


def test_train_and_test_folders_are_the_splits(tmp_path, params):
    write_classes(tmp_path / "img" / "train", {"x": 10, "y": 10})
    write_classes(tmp_path / "img" / "test", {"x": 2, "y": 3})
    out = tmp_path / "out"
    out.mkdir()
    assert make_folder_splits(tmp_path / "img", out, params) == {"train": 16, "val": 4, "test": 5}
    assert all(m["path"].startswith("test/") for m in read_manifest(out) if m["split"] == "test")


def test_a_flat_folder_has_no_labels(tmp_path):
    (tmp_path / "img").mkdir()
    for i in range(4):
        grey(i).save(tmp_path / "img" / f"{i}.png")
    data = ingest(tmp_path / "img", 1, 28, 2)
    assert data.classes == () and (data.labels == -1).all() and data.images.shape == (4, 28, 28)


def test_resize_crops_the_centre_and_counts_upscaled_images(tmp_path, caplog):
    (tmp_path / "img").mkdir()
    wide = np.zeros((20, 60), dtype=np.uint8)
    wide[:, 20:40] = 255  # the middle third is white: after the crop, all of it
    Image.fromarray(wide).save(tmp_path / "img" / "wide.png")
    with caplog.at_level(logging.INFO, logger="vae"):
        data = ingest(tmp_path / "img", 1, 28, 1)
    # shorter side 20 -> 28, width 60 -> 84, of which the middle 28 (the white third) stay
    assert data.images.shape == (1, 28, 28) and data.images[0, :, 1:-1].min() > 250
    assert "1 were smaller than 28 (upscaled)" in caplog.text
    assert read_sizes(data) == [(60, 20)]


def read_sizes(data) -> list[tuple[int, int]]:
    return [(m["width"], m["height"]) for m in data.manifest]


def test_alpha_palette_and_16_bit_are_converted_and_counted(tmp_path, caplog):
    folder = tmp_path / "img"
    folder.mkdir()
    Image.new("RGBA", (28, 28), (255, 0, 0, 0)).save(folder / "alpha.png")
    Image.new("RGB", (28, 28), (0, 255, 0)).convert("P").save(folder / "palette.png")
    Image.fromarray(np.full((28, 28), 65535, dtype=np.uint16)).save(folder / "deep.png")
    with caplog.at_level(logging.INFO, logger="vae"):
        data = ingest(folder, 3, 28, 2)
    assert "1 had an alpha channel" in caplog.text and "1 were palette PNGs" in caplog.text
    assert "1 had 16 bits per sample" in caplog.text
    by_name = {Path(m["path"]).stem: data.images[i] for i, m in enumerate(data.manifest)}
    assert data.images.shape == (3, 3, 28, 28)
    assert (by_name["alpha"][:, 0, 0] == (255, 0, 0)).all() and (by_name["palette"][:, 0, 0] == (0, 255, 0)).all()
    assert (by_name["deep"] == 255).all()  # grey expanded to three channels


def test_rgb_becomes_grey_by_luma(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (28, 28), (255, 0, 0)).save(tmp_path / "img" / "red.png")
    data = ingest(tmp_path / "img", 1, 28, 1)
    assert abs(int(data.images[0, 0, 0]) - 76) <= 1  # 0.299 * 255, as PIL's convert("L")


def test_exif_orientation_is_applied(tmp_path):
    (tmp_path / "img").mkdir()
    tall = np.zeros((40, 20, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    Image.fromarray(tall).save(tmp_path / "img" / "photo.jpg", exif=exif)
    data = ingest(tmp_path / "img", 3, 28, 1)
    assert read_sizes(data) == [(40, 20)]  # the upright image is wide


# Bad input: one line naming the file (or folder) and the fix.

def test_a_missing_folder(tmp_path):
    with pytest.raises(UserError, match=r"image_folder = .*nope is not a folder; put your images there"):
        ingest(tmp_path / "nope", 1, 28, 1)


def test_a_folder_without_images_counts_what_it_ignored(tmp_path):
    (tmp_path / "img").mkdir()
    for name in (".DS_Store", "Thumbs.db", "notes.txt"):
        (tmp_path / "img" / name).write_text("x")
    with pytest.raises(UserError, match=r"holds no JPEG, PNG, GIF or WebP image \(ignored 3 other files"):
        ingest(tmp_path / "img", 1, 28, 1)


def test_files_that_are_not_images_are_ignored_and_counted(tmp_path, caplog):
    write_classes(tmp_path / "img", {"a": 3})
    (tmp_path / "img" / "a" / "Thumbs.db").write_text("x")
    (tmp_path / "img" / "a" / ".DS_Store").write_text("x")
    (tmp_path / "img" / "README.txt").write_text("x")
    with caplog.at_level(logging.INFO, logger="vae"):
        data = ingest(tmp_path / "img", 1, 28, 1)
    assert len(data.images) == 3 and "ignored 3 files that are not JPEG, PNG, GIF or WebP images" in caplog.text


def test_an_undecodable_file_is_refused_naming_it(tmp_path):
    write_classes(tmp_path / "img", {"a": 3})
    (tmp_path / "img" / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(UserError, match=r"a/broken\.jpg cannot be decoded .*set undecodable: skip"):
        ingest(tmp_path / "img", 1, 28, 1)


def test_skip_leaves_an_undecodable_file_out_and_lists_it(tmp_path, params):
    write_classes(tmp_path / "img", {"a": 10})
    (tmp_path / "img" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    out.mkdir()
    sizes = make_folder_splits(tmp_path / "img", out, replace(params, undecodable="skip"))
    assert sum(sizes.values()) == 10
    broken = [m for m in read_manifest(out) if m["path"] == "a/broken.png"]
    assert broken and broken[0]["skipped"] and broken[0]["split"] == ""


def test_an_empty_class_folder(tmp_path):
    write_classes(tmp_path / "img", {"a": 3})
    (tmp_path / "img" / "b").mkdir()
    (tmp_path / "img" / "b" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=r"img/b: the class folder 'b' holds no .* add images to it or remove"):
        ingest(tmp_path / "img", 1, 28, 1)


def test_a_class_in_train_but_not_in_test(tmp_path):
    write_classes(tmp_path / "img" / "train", {"a": 3, "b": 3})
    write_classes(tmp_path / "img" / "test", {"a": 3})
    with pytest.raises(UserError, match=r"train/b: the class 'b' is in train/ but not in test/; add test images"):
        ingest(tmp_path / "img", 1, 28, 1)


def test_images_beside_class_folders(tmp_path):
    write_classes(tmp_path / "img", {"a": 3})
    grey(0).save(tmp_path / "img" / "stray.png")
    with pytest.raises(UserError, match=r"stray\.png: 1 images lie in .* beside its class folders"):
        ingest(tmp_path / "img", 1, 28, 1)


@pytest.mark.parametrize("counts, match", [
    ({"a": 3}, r"gives 1 test images, fewer than the 2"),
    ({"a": 6}, r"gives 2 training images, fewer than the 5 neighbours of evaluate's kNN probe"),
])
def test_too_few_images_for_the_splits_and_the_knn_probe(tmp_path, params, counts, match):
    write_classes(tmp_path / "img", counts)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError, match=match):
        make_folder_splits(tmp_path / "img", out, replace(params, test_fraction=0.34, val_fraction=0.5))
    assert not any(out.iterdir())  # nothing written


# Images without labels: what needs labels is not defined (left out), never 0, never a traceback.

def test_without_labels_the_probes_are_left_out_of_the_metrics():
    from vae.metrics import evaluate
    from vae.model import VAE, VAEConfig

    x = torch.rand(40, 784)
    no_labels = np.full(40, -1)
    metrics, _ = evaluate(VAE(VAEConfig(hidden_dim=16)), x, no_labels, x[:20], no_labels[:20], k=2, progress=False)
    assert "loss" in metrics and not {"knn_accuracy", "linear_probe_accuracy"} & set(metrics)


def test_without_labels_the_classifier_file_says_so(tmp_path):
    from vae.classifier import load_classifier, save_classifier

    save_classifier(tmp_path / "classifier.pt", None)
    assert load_classifier(tmp_path / "classifier.pt") is None


def test_without_labels_the_latent_plot_has_one_colour_and_no_legend(tmp_path):
    import pandas as pd

    from vae.figures import latent_scatter

    points = pd.DataFrame({"x": np.arange(5.0), "y": np.arange(5.0), "label": -1, "class": ""})
    latent_scatter(tmp_path / "latent.png", points, "t")
    assert (tmp_path / "latent.png").stat().st_size > 0


def test_without_labels_interpolations_pair_the_first_images():
    from vae.generate import pick_pairs

    assert pick_pairs(torch.full((7,), -1), 10) == [(0, 1), (2, 3), (4, 5)]
