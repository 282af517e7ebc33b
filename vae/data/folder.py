"""A folder of the user's images as a dataset: found, decoded once, and written as the arrays the stages read.

The layout is torchvision's ``ImageFolder``: one subfolder per class (class indices in sorted
name order; images anywhere below a class folder), or images directly in the folder (no
labels, label -1). Where the folder holds ``train/`` and ``test/``, each laid out so, those
are the splits; otherwise a seeded ``test_fraction`` of the images is the test split.

Each file is read and decoded once by torchvision (``decode_image``: libjpeg-turbo for JPEG,
libpng for PNG, giflib for GIF, libwebp for WebP), turned upright by its EXIF orientation,
converted to ``channels`` (alpha dropped, palettes expanded, 16-bit scaled to 8), its shorter
side resized to ``image_size`` with antialiasing and centre-cropped (torchvision's transforms
v2). Threads decode into one preallocated uint8 array, so memory follows the output, not the
originals. Grey images are stored (N, H, W) like the IDX datasets', RGB ones (N, 3, H, W).
"""

import csv
import hashlib
import io
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vae.data.split import split_indices, write_splits
from vae.errors import UserError
from vae.io import write_text
from vae.params import KNN_NEIGHBORS, Params

log = logging.getLogger("vae")

READ_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")  # what decode_image reads; any other file is ignored
FORMATS = "JPEG, PNG, GIF or WebP"
SPLIT_FOLDERS = ("train", "test")
UNLABELLED = -1  # the label of every image of a flat folder
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_PALETTE = 3  # the IHDR colour type of a palette PNG
MIN_TEST = 2  # t-SNE places at least 2 points
MANIFEST = "manifest.csv"  # beside train/val/test.npz: every file of the folder, and which split each went to
MANIFEST_COLUMNS = ("row", "split", "path", "md5", "label", "class", "width", "height", "skipped")


@dataclass(frozen=True)
class Found:
    """The images of a folder, in a fixed order, with their labels and where they were found."""

    paths: list[Path]  # relative to the folder
    labels: list[int]
    splits: list[str]  # "train" or "test" where the folder holds those subfolders, else "" (cut later)
    classes: tuple[str, ...]  # empty for a flat folder
    ignored: Counter  # files that are not images, by suffix (or name)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")  # .DS_Store, ._photo.jpg (macOS), .ipynb_checkpoints


def _files(folder: Path, ignored: Counter) -> list[Path]:
    """Every readable image below ``folder`` in sorted order; other files are counted in ``ignored``."""
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder)
        if path.suffix.lower() in READ_SUFFIXES and all(_visible(Path(p)) for p in rel.parts):
            found.append(path)
        else:
            ignored[path.suffix.lower() or path.name] += 1
    return found


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def _scan(folder: Path, ignored: Counter, where: str) -> tuple[dict[str, list[Path]], bool]:
    """class name -> its images (a flat folder: one nameless class), and whether the folder has classes."""
    classes = _class_folders(folder)
    if not classes:
        return {"": _files(folder, ignored)}, False
    loose = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in READ_SUFFIXES and _visible(p)]
    ignored.update(p.suffix.lower() or p.name for p in folder.iterdir() if p.is_file() and p not in loose)
    if loose:
        raise UserError(f"{loose[0]}: {len(loose)} images lie in {where} beside its class folders, so they have no "
                        "class; move them into a class folder (or put every image directly in the folder)")
    by_class = {}
    for path in classes:
        images = _files(path, ignored)
        if not images:
            raise UserError(f"{path}: the class folder {path.name!r} holds no {FORMATS} image; add images to it "
                            "or remove the folder")
        by_class[path.name] = images
    return by_class, True


def find_images(folder: str | Path) -> Found:
    """The images of ``folder`` and their labels, as ``ImageFolder`` finds them, with the splits it holds."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"image_folder = {folder} is not a folder; put your images there (one subfolder per class, "
                        "or all in the folder) or set image_folder in params.yaml")
    ignored: Counter = Counter()
    names = {p.name for p in _class_folders(root)}
    if set(SPLIT_FOLDERS) <= names:
        parts = {split: _scan(root / split, ignored, f"{folder}/{split}") for split in SPLIT_FOLDERS}
        train_labelled, test_labelled = parts["train"][1], parts["test"][1]
        if train_labelled != test_labelled:
            raise UserError(f"{folder}: one of train/ and test/ has class folders and the other not; lay both "
                            "out alike")
        for a, b in (("train", "test"), ("test", "train")):
            missing = sorted(set(parts[a][0]) - set(parts[b][0]))
            if missing:
                raise UserError(f"{folder}/{a}/{missing[0]}: the class {missing[0]!r} is in {a}/ but not in {b}/; "
                                f"add {b} images of it or remove it from {a}/")
        split_of = {split: parts[split][0] for split in SPLIT_FOLDERS}
        labelled = train_labelled
    else:
        by_class, labelled = _scan(root, ignored, str(folder))
        split_of = {"": by_class}
    classes = tuple(sorted(next(iter(split_of.values())))) if labelled else ()
    paths, labels, splits = [], [], []
    for split, by_class in split_of.items():
        for name in sorted(by_class):
            for path in by_class[name]:
                paths.append(path.relative_to(root))
                labels.append(classes.index(name) if labelled else UNLABELLED)
                splits.append(split)
    if not paths:
        raise UserError(f"image_folder = {folder} holds no {FORMATS} image{_ignored_text(ignored)}; put your images "
                        "there, or set image_folder in params.yaml")
    return Found(paths, labels, splits, classes, ignored)


def _ignored_text(ignored: Counter) -> str:
    if not ignored:
        return ""
    kinds = ", ".join(f"{kind}: {n}" for kind, n in ignored.most_common(5))
    return f" (ignored {sum(ignored.values())} other files: {kinds})"


@dataclass
class Decoded:
    """One file's outcome: its md5 and original size, what was converted, or why it could not be decoded."""

    md5: str = ""
    width: int = 0
    height: int = 0
    notes: tuple[str, ...] = ()  # alpha, palette, 16-bit, upscaled
    error: str = ""


def _png_header(data: bytes) -> tuple[int, int] | None:
    """A PNG's bit depth and colour type (3: palette), from its IHDR chunk; None for other formats."""
    return (data[24], data[25]) if data.startswith(PNG_MAGIC) and len(data) > 25 else None


def decode(data: bytes, channels: int, size: int) -> tuple[torch.Tensor, Decoded]:
    """One file's bytes -> a uint8 (channels, size, size) tensor and what was done to it.

    Raises ``RuntimeError`` (torchvision's) for bytes that are no image it reads.
    """
    # Imported here: torchvision's import takes seconds, and only a folder's split decodes images.
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2 import functional as F

    header = _png_header(data)
    palette = header is not None and header[1] == PNG_PALETTE
    # UNCHANGED keeps a palette PNG's indices: expand those to colours
    mode = ImageReadMode.RGB if palette else ImageReadMode.UNCHANGED
    image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode,
                         apply_exif_orientation=True)
    notes = ["palette"] if palette else []
    if image.dtype != torch.uint8:
        notes.append("16-bit")
        image = F.to_dtype(image, torch.uint8, scale=True)
    if image.shape[0] in (2, 4):
        notes.append("alpha")
        image = image[:-1]
    height, width = image.shape[-2:]
    if image.shape[0] != channels:
        image = F.rgb_to_grayscale(image) if channels == 1 else image.expand(3, -1, -1)
    if min(height, width) < size:
        notes.append("upscaled")
    if (height, width) != (size, size):
        image = F.center_crop(F.resize(image, [size], antialias=True), [size, size])
    return image, Decoded(width=width, height=height, notes=tuple(notes))


def decode_all(folder: Path, paths: list[Path], channels: int, size: int, threads: int
               ) -> tuple[np.ndarray, list[Decoded]]:
    """Decode every file on ``threads`` threads into one preallocated (N, [3,] size, size) uint8 array."""
    shape = (len(paths), size, size) if channels == 1 else (len(paths), channels, size, size)
    out = np.zeros(shape, dtype=np.uint8)

    def one(i: int) -> Decoded:
        data = (folder / paths[i]).read_bytes()
        md5 = hashlib.md5(data).hexdigest()
        try:
            image, done = decode(data, channels, size)
        except RuntimeError as err:
            return Decoded(md5=md5, error=str(err).strip().splitlines()[0] if str(err).strip() else "undecodable")
        out[i] = image.squeeze(0).numpy() if channels == 1 else image.numpy()
        done.md5 = md5
        return done

    with ThreadPoolExecutor(threads) as pool:
        results = list(tqdm(pool.map(one, range(len(paths))), total=len(paths), desc="decoding", unit="image",
                            leave=False, mininterval=1.0))
    return out, results


def _log_counts(found: Found, results: list[Decoded], channels: int, size: int) -> None:
    notes = Counter(note for r in results for note in r.notes)
    said = {"alpha": "had an alpha channel (dropped)", "palette": "were palette PNGs (expanded)",
            "16-bit": "had 16 bits per sample (scaled to 8)", "upscaled": f"were smaller than {size} (upscaled)"}
    log.info("decoded %d images to %s x %d x %d%s", sum(not r.error for r in results), channels, size, size,
             "".join(f"; {notes[k]} {text}" for k, text in said.items() if notes[k]))
    if found.ignored:
        log.info("ignored %d files that are not %s images: %s", sum(found.ignored.values()), FORMATS,
                 ", ".join(f"{kind}: {n}" for kind, n in found.ignored.most_common()))


@dataclass(frozen=True)
class Ingested:
    """A folder's decoded images with their labels, the manifest rows they came from, and the layout's splits."""

    images: np.ndarray
    labels: np.ndarray
    rows: np.ndarray  # each image's row of the manifest
    splits: np.ndarray  # "train", "test" or "" per image
    classes: tuple[str, ...]
    manifest: list[dict[str, object]]


def ingest(folder: str | Path, channels: int, size: int, threads: int, undecodable: str = "refuse") -> Ingested:
    """Find, decode and convert every image of ``folder``; undecodable files stop it, or (``skip``) are left out.

    Every file is a manifest row (path inside the folder, md5, label, original size); a skipped
    file's row says why and holds no image.
    """
    folder = Path(folder)
    found = find_images(folder)
    images, results = decode_all(folder, found.paths, channels, size, threads)
    bad = [(path, r.error) for path, r in zip(found.paths, results) if r.error]
    if bad and undecodable == "refuse":
        raise UserError(f"{folder / bad[0][0]} cannot be decoded as a {FORMATS} image ({bad[0][1]})"
                        f"{f' (and {len(bad) - 1} more files)' if len(bad) > 1 else ''}; replace or remove it, "
                        "or set undecodable: skip to leave such files out (the manifest lists them)")
    if bad:
        log.warning("skipped %d files that could not be decoded (listed in the manifest), the first: %s",
                    len(bad), folder / bad[0][0])
    _log_counts(found, results, channels, size)
    keep = np.array([not r.error for r in results])
    if not keep.any():
        raise UserError(f"image_folder = {folder}: none of its {len(keep)} images could be decoded; replace them")
    manifest = [{"row": i, "split": split, "path": path.as_posix(), "md5": r.md5, "label": label,
                 "class": found.classes[label] if label != UNLABELLED else "", "width": r.width,
                 "height": r.height, "skipped": r.error}
                for i, (path, label, split, r) in enumerate(zip(found.paths, found.labels, found.splits, results))]
    kept = np.flatnonzero(keep)
    return Ingested(images[kept] if not keep.all() else images, np.array(found.labels, dtype=np.int64)[kept], kept,
                    np.array(found.splits)[kept], found.classes, manifest)


def manifest_csv(manifest: list[dict[str, object]]) -> str:
    """The manifest as CSV text: a header, then one line per file."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(manifest)
    return buffer.getvalue()


def make_folder_splits(folder: str | Path, out_dir: str | Path, params: Params) -> dict[str, int]:
    """Write train/val/test ``.npz`` (index: manifest rows) and ``manifest.csv`` of a folder of images.

    The test split is the folder's ``test/``, or a seeded ``test_fraction`` of its images;
    ``val_fraction`` of the rest is the validation split, as for the IDX datasets.
    """
    data = ingest(folder, params.channels, params.image_size, params.threads, params.undecodable)
    if (data.splits == "").all():
        pool, test = (np.sort(part) for part in split_indices(len(data.images), params.test_fraction,
                                                              params.data_seed, "test_fraction"))
    else:
        pool, test = np.flatnonzero(data.splits == "train"), np.flatnonzero(data.splits == "test")
    check_counts(folder, len(pool), len(test), params.val_fraction)

    def part(idx: np.ndarray) -> tuple[np.ndarray, ...]:
        return data.images[idx], data.labels[idx], data.rows[idx]

    rows = write_splits(out_dir, part(pool), part(test), params.val_fraction, params.data_seed, params.train_subset)
    for entry in data.manifest:  # "unused": left out by train_subset; "": skipped, never decoded
        entry["split"] = "" if entry["skipped"] else "unused"
    for split, index in rows.items():
        for row in index:
            data.manifest[row]["split"] = split
    write_text(Path(out_dir) / MANIFEST, manifest_csv(data.manifest))
    return {name: len(index) for name, index in rows.items()}


def check_counts(folder: str | Path, pool: int, test: int, val_fraction: float) -> None:
    """Enough images for the splits and for evaluate's kNN probe: a folder's counts, known only once it is read."""
    train = pool - int(val_fraction * pool)
    if test < MIN_TEST:
        raise UserError(f"image_folder = {folder} gives {test} test images, fewer than the {MIN_TEST} the latent "
                        "plots place; add images (to test/, or raise test_fraction)")
    if train < KNN_NEIGHBORS:
        raise UserError(f"image_folder = {folder} gives {train} training images, fewer than the {KNN_NEIGHBORS} "
                        "neighbours of evaluate's kNN probe; add images (or lower val_fraction)")
