"""Training speed: the notebook's training loop against the pipeline's, on the same data and model.

Run from the repository root::

    python -m benchmarks.train_speed [--epochs N] [--device auto|cpu|cuda] [--data-dir DIR]

What is measured
----------------
Both variants train ``vae.model.VAE`` (the notebook's architecture: 784-512-512-2, 2-512-512-784)
on MNIST's 54,000 training images with batch size 128, Adam at lr 1e-3 and seed 42, for
``--epochs`` epochs each, in one process, alternating epochs: notebook, pipeline, notebook, ...
Alternating means both see the same machine load, which matters on a shared machine.

``notebook``
    The notebook's loop as written: ``datasets.MNIST`` with a ``ToTensor`` transform over the
    raw IDX files, ``random_split``, ``DataLoader(batch_size=128, shuffle=True, num_workers=2,
    pin_memory=True)``, its ``train_epoch`` and ``eval_epoch`` (with ``.item()`` per batch) and
    its ``nn.BCELoss(reduction="sum")`` + analytic KL. The only adaptation is a view of the
    decoder output to (N, 1, 28, 28), which the notebook's decoder does itself.
``pipeline``
    What the train stage runs: ``TrainState.new``, ``vae.training.train_epoch`` and
    ``evaluate_elbo`` on the whole split held as one float tensor (``vae.data.split``).
``GEMM floor``
    Not a way of training: the matrix multiplies of one training epoch and nothing else,
    the same shapes and layouts as the pipeline's forward and backward passes, into
    preallocated outputs. Any float32 implementation of the model has to do this work, so
    its time bounds how fast an epoch can be on this device, and ``notebook/floor`` bounds
    the speed-up any loop could reach. Timed after each pipeline epoch.

How to read the output
----------------------
One line per epoch as it finishes, then a table:

* ``train s``: wall-clock seconds of each training epoch (validation is timed apart, ``val s``);
  ``median`` is over epochs, so the first epoch's warm-up does not dominate.
* ``notebook/pipeline``: ratio of the two epochs run back to back (1st with 1st, ...); the
  median of these ratios is the headline speed-up, robust to load that comes and goes.
  ``pipeline/floor`` says how far the pipeline is from the GEMM floor, ``notebook/floor`` the
  largest speed-up possible.
* ``images/s``: training images per second at the median epoch time.
* ``peak extra MiB``: on the CPU, how far the process's peak resident memory (VmHWM) rose above
  its resident memory at the start of that variant's epochs (the peak is reset before each
  epoch), i.e. the loop's working memory; ``data MiB`` is what the variant keeps resident for
  its images; ``worker MiB`` is the largest DataLoader worker's peak RSS (the notebook only;
  it counts pages shared with the main process after fork, so it overstates the worker's own use).
  On CUDA it is ``torch.cuda.max_memory_allocated`` during the variant's epochs, data included.
* ``val loss``: per-image validation loss (-ELBO, one latent sample) after the last epoch. The
  two runs use different batch orders and noise, so they differ a little; after the same
  number of epochs they should be within about 1 nat; the script checks 1.5 and exits 1 beyond.

Timings on a shared machine are noisy; rerun and compare ratios rather than seconds.
"""

import argparse
import gzip
import math
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn, optim
from torch.utils.data import DataLoader, random_split
from torchvision import datasets, transforms

from vae.data.split import load_split, to_tensor
from vae.model import IMAGE_SHAPE, INPUT_DIM, VAE
from vae.training import TrainState, evaluate_elbo, resolve_device, train_epoch

BATCH_SIZE = 128
LR = 1e-3
SEED = 42
HIDDEN_DIM = 512
LATENT_DIM = 2
VAL_FRACTION = 0.1
VAL_TOLERANCE = 1.5  # nats per image; runs of one loop with different seeds spread about this much
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MIB = 2**20


# --- memory -------------------------------------------------------------------------------------

def _status_kib(field_name: str) -> int:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status, in KiB (0 where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class Memory:
    """Peak memory of one variant over its epochs, in MiB."""

    device: torch.device
    peak_extra: float = 0.0
    exact: bool = True  # False when the CPU peak could not be reset between variants

    @contextmanager
    def measure(self) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            yield
            torch.cuda.synchronize(self.device)
            self.peak_extra = max(self.peak_extra, torch.cuda.max_memory_allocated(self.device) / MIB)
            return
        self.exact &= _reset_peak_rss()
        start = _status_kib("VmRSS")
        yield
        self.peak_extra = max(self.peak_extra, (_status_kib("VmHWM") - start) / 1024)


def children_peak_mib() -> float:
    """Largest peak RSS of any finished child process (the DataLoader workers)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux


# --- the two variants ---------------------------------------------------------------------------

@dataclass
class Variant:
    """One way of training: ``train()`` runs an epoch, ``validate()`` returns the val loss."""

    name: str
    train: Callable[[int], None]
    validate: Callable[[], float]
    n_train: int
    data_mib: float
    memory: Memory
    train_s: list[float] = field(default_factory=list)
    val_s: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)


class NotebookOutput(nn.Module):
    """``vae.model.VAE`` returning x_hat as (N, 1, 28, 28), as the notebook's decoder does."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x_hat, mu, logvar, z = self.vae(x)
        return x_hat.view(-1, *IMAGE_SHAPE), mu, logvar, z


def notebook_variant(mnist_root: Path, device: torch.device) -> Variant:
    """The notebook's data pipeline, model setup and loops, in the notebook's order."""
    torch.manual_seed(SEED)
    transform = transforms.Compose([transforms.ToTensor()])
    ds = datasets.MNIST(str(mnist_root), train=True, download=False, transform=transform)
    val_size = int(VAL_FRACTION * len(ds))
    train_size = len(ds) - val_size
    train_ds, val_ds = random_split(ds, [train_size, val_size])
    train_loader = DataLoader(train_ds, batch_size=BATCH_SIZE, shuffle=True, num_workers=2, pin_memory=True)
    val_loader = DataLoader(val_ds, batch_size=BATCH_SIZE, shuffle=False, num_workers=2, pin_memory=True)
    img_shape = next(iter(train_loader))[0].shape[1:]  # the notebook does this; it draws from the RNG
    input_dim = int(np.prod(img_shape))
    model = NotebookOutput(VAE(input_dim, HIDDEN_DIM, LATENT_DIM)).to(device)
    reconstruction_loss_fn = nn.BCELoss(reduction="sum")
    optimizer = optim.Adam(model.parameters(), lr=LR)

    # The notebook's cells, verbatim apart from `device` and the names of the two loops.
    def vae_loss(x, x_hat, mu, logvar):
        recon_loss = reconstruction_loss_fn(x_hat, x)
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return recon_loss + kld, recon_loss, kld

    def nb_train_epoch(model, loader, optimizer):
        model.train()
        total_loss = 0.0
        total_recon = 0.0
        total_kld = 0.0
        for x, _ in loader:
            x = x.to(device)
            optimizer.zero_grad()
            x_hat, mu, logvar, _ = model(x)
            loss, recon, kld = vae_loss(x, x_hat, mu, logvar)
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            total_recon += recon.item()
            total_kld += kld.item()
        n = len(loader.dataset)
        return total_loss / n, total_recon / n, total_kld / n

    def nb_eval_epoch(model, loader):
        model.eval()
        total_loss = 0.0
        total_recon = 0.0
        total_kld = 0.0
        with torch.no_grad():
            for x, _ in loader:
                x = x.to(device)
                x_hat, mu, logvar, _ = model(x)
                loss, recon, kld = vae_loss(x, x_hat, mu, logvar)
                total_loss += loss.item()
                total_recon += recon.item()
                total_kld += kld.item()
        n = len(loader.dataset)
        return total_loss / n, total_recon / n, total_kld / n

    return Variant(
        name="notebook",
        train=lambda epoch: nb_train_epoch(model, train_loader, optimizer),
        validate=lambda: nb_eval_epoch(model, val_loader)[0],
        n_train=train_size,
        data_mib=ds.data.nbytes / MIB,  # uint8; the workers turn each image into floats
        memory=Memory(device),
    )


def pipeline_variant(processed_dir: Path, device: torch.device) -> Variant:
    """What the train stage does: whole splits as float tensors, ``train_epoch``, ``evaluate_elbo``."""
    train_x = to_tensor(load_split(processed_dir, "train")[0], device)
    val_x = to_tensor(load_split(processed_dir, "val")[0], device)
    state = TrainState.new(INPUT_DIM, HIDDEN_DIM, LATENT_DIM, LR, SEED, device)
    return Variant(
        name="pipeline",
        train=lambda epoch: train_epoch(state, train_x, BATCH_SIZE, epoch, progress=False),
        validate=lambda: evaluate_elbo(state.model, val_x, SEED)["loss"],
        n_train=len(train_x),
        data_mib=(train_x.nbytes + val_x.nbytes) / MIB,
        memory=Memory(device),
    )


@torch.no_grad()
def gemm_floor_epoch(n_train: int, device: torch.device) -> float:
    """Seconds for the matrix multiplies of one training epoch of the VAE, and nothing else.

    Per batch, for each linear layer: the forward ``addmm``, the weight gradient
    ``grad_out.t() @ input`` as autograd computes it for ``nn.Linear``, and, except for the
    first layer (its input is the data), the input gradient ``grad_out @ weight``.
    """
    with torch.device("meta"):  # shapes only: draws nothing from the notebook's global RNG
        layers = [m for m in VAE(INPUT_DIM, HIDDEN_DIM, LATENT_DIM).modules() if isinstance(m, nn.Linear)]
    gen = torch.Generator(device=device).manual_seed(SEED)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=gen, device=device)

    ops: list[Callable[[], torch.Tensor]] = []
    for i, layer in enumerate(layers):
        w, b = rand(*layer.weight.shape), rand(layer.out_features)
        x, g = rand(BATCH_SIZE, layer.in_features), rand(BATCH_SIZE, layer.out_features)
        ops.append(partial(torch.addmm, b, x, w.t(), out=torch.empty_like(g)))
        ops.append(partial(torch.mm, g.t(), x, out=torch.empty_like(w)))
        if i:
            ops.append(partial(torch.mm, g, w, out=torch.empty_like(x)))
    sync(device)
    start = time.perf_counter()
    for _ in range(math.ceil(n_train / BATCH_SIZE)):
        for op in ops:
            op()
    sync(device)
    return time.perf_counter() - start


# --- running ------------------------------------------------------------------------------------

def torchvision_root(data_dir: Path, tmp: Path) -> Path:
    """A folder laid out as torchvision expects, ``<root>/MNIST/raw/<file>``, linking to ``data_dir``.

    ``data_dir`` holds the four uncompressed IDX files (data/raw), or their ``.gz`` (the mirror).
    """
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW_FILES:
        plain, packed = data_dir / name, data_dir / f"{name}.gz"
        if plain.is_file():
            (raw / name).symlink_to(plain.resolve())
        elif packed.is_file():
            with gzip.open(packed) as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            sys.exit(f"{data_dir} has neither {name} nor {name}.gz; run `dvc repro download` "
                     "or pass --data-dir")
    return tmp


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_epoch(variant: Variant, epoch: int, device: torch.device) -> None:
    """Train one epoch (timed, memory measured), then validate (timed apart)."""
    with variant.memory.measure():
        sync(device)
        start = time.perf_counter()
        variant.train(epoch)
        sync(device)
        variant.train_s.append(time.perf_counter() - start)
    start = time.perf_counter()
    variant.val_loss.append(variant.validate())
    sync(device)
    variant.val_s.append(time.perf_counter() - start)
    print(f"  epoch {epoch} {variant.name:<9} train {variant.train_s[-1]:7.2f} s | "
          f"val {variant.val_s[-1]:5.2f} s | val loss {variant.val_loss[-1]:.4f}", flush=True)


def report(a: Variant, b: Variant, floor_s: list[float], device: torch.device, workers_mib: float) -> bool:
    """Print the table; return whether the final validation losses agree within tolerance."""
    ratios = [ta / tb for ta, tb in zip(a.train_s, b.train_s)]
    epochs = len(ratios)
    width = 12
    head = f"{'':<26}" + "".join(f"{'epoch ' + str(e + 1):>{width}}" for e in range(epochs)) + f"{'median':>{width}}"
    print("\n" + head)
    print("-" * len(head))

    def row(label: str, values: list[float], fmt: str, median: bool = True) -> None:
        cells = "".join(f"{v:>{width}{fmt}}" for v in values)
        tail = f"{statistics.median(values):>{width}{fmt}}" if median else ""
        print(f"{label:<26}{cells}{tail}")

    for v in (a, b):
        row(f"{v.name} train s", v.train_s, ".2f")
    row("notebook/pipeline", ratios, ".2f")
    row("GEMM floor s", floor_s, ".2f")
    row("pipeline/floor", [tb / tf for tb, tf in zip(b.train_s, floor_s)], ".2f")
    row("notebook/floor", [ta / tf for ta, tf in zip(a.train_s, floor_s)], ".2f")
    for v in (a, b):
        row(f"{v.name} val s", v.val_s, ".2f")
    for v in (a, b):
        row(f"{v.name} val loss", v.val_loss, ".3f", median=False)
    print()
    print(f"{'':<26}{'images/s':>{width}}{'peak extra MiB':>16}{'data MiB':>{width}}{'worker MiB':>{width}}")
    for v in (a, b):
        rate = v.n_train / statistics.median(v.train_s)
        workers = f"{workers_mib:>{width}.0f}" if v is a and device.type == "cpu" else f"{'-':>{width}}"
        note = "" if v.memory.exact else " (peak not resettable: shared)"
        print(f"{v.name:<26}{rate:>{width}.0f}{v.memory.peak_extra:>16.0f}{v.data_mib:>{width}.0f}{workers}{note}")
    speedup = statistics.median(ratios)
    gap = abs(a.val_loss[-1] - b.val_loss[-1])
    ok = gap <= VAL_TOLERANCE
    print(f"\nspeed-up (median of notebook/pipeline epoch ratios): {speedup:.2f}x")
    print(f"val loss after epoch {epochs}: notebook {a.val_loss[-1]:.3f}, pipeline {b.val_loss[-1]:.3f}, "
          f"difference {gap:.3f} nats -> {'OK' if ok else 'MISMATCH'} (tolerance {VAL_TOLERANCE})")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per variant (default 3)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:N]")
    parser.add_argument("--data-dir", type=Path, default=Path("data/raw"),
                        help="raw MNIST IDX files, plain or .gz, for the notebook's loop (default data/raw)")
    parser.add_argument("--processed-dir", type=Path, default=Path("data/processed"),
                        help="the split stage's train/val.npz, for the pipeline's loop (default data/processed)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    device = resolve_device(args.device)
    # pin_memory=True without a GPU only warns; the notebook sets it, so it stays.
    warnings.filterwarnings("ignore", message=".*pin_memory.*")

    print(f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
                                 f" ({os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads)"))
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="mnist-") as tmp:
        b = pipeline_variant(args.processed_dir, device)
        a = notebook_variant(torchvision_root(args.data_dir, Path(tmp)), device)
        if a.n_train != b.n_train:
            sys.exit(f"the notebook's split has {a.n_train} training images but {args.processed_dir} has "
                     f"{b.n_train}; rerun the split stage with train_subset: 0")
        print(f"{a.n_train} training images, batch {BATCH_SIZE}, {args.epochs} epochs each, alternating\n",
              flush=True)
        floor_s: list[float] = []
        for epoch in range(1, args.epochs + 1):
            for variant in (a, b):
                run_epoch(variant, epoch, device)
            floor_s.append(gemm_floor_epoch(b.n_train, device))
            print(f"  epoch {epoch} GEMM floor {floor_s[-1]:6.2f} s", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    return 0 if report(a, b, floor_s, device, children_peak_mib()) else 1


if __name__ == "__main__":
    sys.exit(main())
