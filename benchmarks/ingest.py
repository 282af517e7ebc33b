"""Decoding a folder of images once (the split stage) against torchvision's ImageFolder + DataLoader.

Run from the repository root::

    python -m benchmarks.ingest [--images 2000] [--size 32] [--threads N] [--folder PATH]

Without ``--folder``, it writes ``--images`` JPEG photographs (random 256 x 256 crops, flipped at
random, of scikit-learn's two sample photographs, quality 90) into a temporary folder of two
classes. Side by side, in one process, on the same files:

``ingest``: ``vae.data.folder.ingest`` (torchvision's ``decode_image``, EXIF orientation,
resize of the shorter side and centre crop with antialiasing, on ``threads`` threads into one
preallocated array), as the split stage runs it. ``ImageFolder``: ``torchvision.datasets.ImageFolder``
(PIL decoding) with the same v2 resize and crop, through a ``DataLoader(num_workers=threads)``,
once over the files. ``ratio``: ingest's seconds over ImageFolder's (at most 1.0: ingest is at
least as fast).

Then one training epoch of the conv VAE (3 x size x size, params.yaml's batch size and lr) fed
from the ingested arrays, against one fed by that DataLoader decoding every file again, as a
pipeline that decodes every epoch would: ``factor`` is the DataLoader epoch's seconds over the
arrays'. Each is timed ``--repeats`` times and the median printed.
"""

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from sklearn.datasets import load_sample_images
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from vae.data.folder import ingest
from vae.model import VAE, VAEConfig, negative_elbo


def write_photos(folder: Path, n: int, seed: int = 0) -> None:
    """``n`` JPEG crops of scikit-learn's sample photographs, half of each photograph, in two class folders."""
    rng = np.random.default_rng(seed)
    photos = load_sample_images().images
    for i in range(n):
        c = i % len(photos)
        photo = photos[c]
        y, x = rng.integers(0, photo.shape[0] - 256), rng.integers(0, photo.shape[1] - 256)
        crop = photo[y:y + 256, x:x + 256][:, ::-1 if rng.random() < 0.5 else 1]
        (folder / str(c)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / str(c) / f"{i:05d}.jpg", quality=90)


def loader(folder: Path, size: int, threads: int, batch_size: int, shuffle: bool) -> DataLoader:
    transform = v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size),
                            v2.ToDtype(torch.float32, scale=True)])
    return DataLoader(ImageFolder(str(folder), transform=transform), batch_size=batch_size, shuffle=shuffle,
                      num_workers=threads, persistent_workers=False)


def seconds(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_epoch(model: VAE, optimizer: torch.optim.Optimizer, batches: Iterable[torch.Tensor]) -> None:
    model.train()
    for x in batches:
        loss, _, _ = negative_elbo(model, x.flatten(1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=params["threads"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", type=Path, help="a folder of JPEGs in class folders (default: written here)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp) / "photos"
        if args.folder is None:
            write_photos(folder, args.images)
        n = sum(1 for _ in folder.rglob("*.jpg"))
        batch = params["batch_size"]
        ingested = ingest(folder, 3, args.size, args.threads)
        t_ingest = seconds(lambda: ingest(folder, 3, args.size, args.threads), args.repeats)
        t_folder = seconds(lambda: [b for b, _ in loader(folder, args.size, args.threads, batch, False)], args.repeats)
        print(f"{n} JPEGs (256 x 256) -> 3 x {args.size} x {args.size}, {args.threads} threads, "
              f"{os.cpu_count()} CPUs, torch {torch.__version__}")
        print(f"decode once   ingest {n / t_ingest:8.0f} images/s   ImageFolder+DataLoader {n / t_folder:8.0f} "
              f"images/s   ratio (ingest s / ImageFolder s) {t_ingest / t_folder:.2f}")

        x = torch.from_numpy(ingested.images).float().div_(255)
        model = VAE(VAEConfig(latent_dim=params["latent_dim"], architecture="conv", channels=3, image_size=args.size))
        optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"])
        generator = torch.Generator().manual_seed(0)

        def from_arrays() -> None:
            order = torch.randperm(len(x), generator=generator)
            train_epoch(model, optimizer, (x[order[i:i + batch]] for i in range(0, len(x), batch)))

        def from_loader() -> None:
            train_epoch(model, optimizer, (b for b, _ in loader(folder, args.size, args.threads, batch, True)))

        t_arrays, t_decoding = seconds(from_arrays, args.repeats), seconds(from_loader, args.repeats)
        print(f"train epoch   from the arrays {t_arrays:6.2f} s   DataLoader decoding every epoch "
              f"{t_decoding:6.2f} s   factor {t_decoding / t_arrays:.1f}x")


if __name__ == "__main__":
    main()
