"""Training speed: the notebook's loop against the train stage's, and both against the GEMM floor.

Run from the repository root after `dvc repro split`::

    python -m benchmarks.train_speed [--epochs N] [--device auto|cpu|cuda]

Both loops train ``vae.model.VAE`` with params.yaml's settings (batch size, lr, seed, model
sizes, validation fraction) on the files dvc.yaml names (the download stage's IDX files for
the notebook, the split stage's ``.npz`` for the pipeline), in one process, alternating
epochs so that both see the same machine load.

``notebook``: the notebook's loop as written (``datasets.MNIST`` + ``ToTensor``,
``random_split``, ``DataLoader(num_workers=2, pin_memory=True)``, ``.item()`` per batch,
``BCELoss(reduction="sum")`` + KL). ``pipeline``: ``vae.training.train_epoch`` and
``evaluate_elbo`` on the split held as one tensor, subnormal floats flushed to zero as every
stage does; ``pipeline kept``: the same loop with IEEE subnormals kept (the cost that the flush
removes: large on Intel cores, small on AMD's). ``GEMM floor``: the epoch's matrix
multiplies alone (every forward ``addmm`` and backward ``mm``, same shapes, preallocated
outputs); no float32 loop can beat it, so ``pipeline/floor`` is the stable figure across
machines and ``notebook/floor`` bounds any speed-up. ``peak extra MiB``: the rise of peak
resident memory over each variant's epochs (CPU) or CUDA's peak allocation; ``worker MiB``:
the largest DataLoader worker's peak RSS. Every per-epoch time is printed; the summary is the
steady state, the median of the second half of the epochs (the first epochs are faster: Adam's
moments have not yet decayed into subnormals). The validation losses after the last epoch must
agree within 1.5 nats (different batch order and noise), else the exit code is 1.
"""

import argparse
import math
import os
import resource
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn, optim
from torch.utils.data import DataLoader, random_split
from torchvision import datasets, transforms

from vae.cli import flush_subnormals
from vae.data.datasets import FILES
from vae.data.split import load_split, to_tensor
from vae.model import INPUT_DIM, VAE
from vae.params import Params, load_params, resolve_device
from vae.pipeline import read_stage
from vae.training import TrainState, evaluate_elbo, train_epoch

VAL_TOLERANCE = 1.5  # nats per image
MIB = 2**20


def peak_rss_since_reset_mib() -> float:
    """VmHWM, the peak resident memory since the last reset, in MiB; 0 where there is no /proc."""
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return 0.0


@dataclass
class Variant:
    name: str
    train: Callable[[int], None]
    validate: Callable[[], float]
    n_train: int
    data_mib: float
    flush: bool  # subnormal floats flushed to zero during its epochs (vae.cli.flush_subnormals)
    train_s: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    peak_extra_mib: float = 0.0

    def run_epoch(self, epoch: int, device: torch.device) -> None:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        else:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        rss_before = peak_rss_since_reset_mib()
        flush_subnormals(self.flush)
        sync(device)
        start = time.perf_counter()
        self.train(epoch)
        sync(device)
        self.train_s.append(time.perf_counter() - start)
        peak = (torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda"
                else peak_rss_since_reset_mib() - rss_before)
        self.peak_extra_mib = max(self.peak_extra_mib, peak)
        self.val_loss.append(self.validate())
        print(f"  epoch {epoch} {self.name:<15} train {self.train_s[-1]:7.2f} s | val loss {self.val_loss[-1]:.4f}",
              flush=True)


def notebook_variant(raw_dir: Path, tmp: Path, p: Params, device: torch.device) -> Variant:
    """The notebook's cells in its order; only ``device`` and the loop names are adapted."""
    (tmp / "MNIST").mkdir()
    (tmp / "MNIST" / "raw").symlink_to(raw_dir.resolve())  # torchvision's layout over data/raw
    torch.manual_seed(p.seed)
    ds = datasets.MNIST(str(tmp), train=True, download=False, transform=transforms.Compose([transforms.ToTensor()]))
    val_size = int(p.val_fraction * len(ds))
    train_ds, val_ds = random_split(ds, [len(ds) - val_size, val_size])
    train_loader = DataLoader(train_ds, batch_size=p.batch_size, shuffle=True, num_workers=2, pin_memory=True)
    val_loader = DataLoader(val_ds, batch_size=p.batch_size, shuffle=False, num_workers=2, pin_memory=True)
    next(iter(train_loader))  # the notebook reads one batch for the image shape; it draws from the RNG
    model = VAE(INPUT_DIM, p.hidden_dim, p.latent_dim).to(device)
    bce = nn.BCELoss(reduction="sum")
    optimizer = optim.Adam(model.parameters(), lr=p.lr)

    def epoch(loader: DataLoader, train: bool) -> float:
        model.train(train)
        totals = [0.0, 0.0, 0.0]
        with torch.set_grad_enabled(train):
            for x, _ in loader:
                x = x.to(device)
                x_hat, mu, logvar, _ = model(x)
                recon = bce(x_hat, x.view(len(x), -1))
                kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
                loss = recon + kld
                if train:
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                for i, term in enumerate((loss, recon, kld)):  # the notebook's three .item() per batch
                    totals[i] += term.item()
        return totals[0] / len(loader.dataset)

    return Variant("notebook", lambda e: epoch(train_loader, True), lambda: epoch(val_loader, False),
                   len(train_ds), ds.data.nbytes / MIB, flush=False)  # as written: no flush


def pipeline_variant(train_npz: Path, val_npz: Path, p: Params, device: torch.device, flush: bool = True) -> Variant:
    """The train stage's loop; with ``flush=False`` as it ran before subnormals were flushed."""
    train_x, val_x = (to_tensor(load_split(path)[0], device) for path in (train_npz, val_npz))
    state = TrainState.new(p.model_config(), p.lr, p.seed, device, p.adam_eps)
    return Variant("pipeline" if flush else "pipeline kept", lambda e: train_epoch(state, train_x, p.batch_size, e,
                                                                                  progress=False),
                   lambda: evaluate_elbo(state.model, val_x, p.seed)["loss"], len(train_x),
                   (train_x.nbytes + val_x.nbytes) / MIB, flush)


@torch.no_grad()
def gemm_floor_epoch(n_train: int, p: Params, device: torch.device) -> float:
    """Seconds for one epoch's matrix multiplies: per layer the forward ``addmm``, the weight
    gradient ``grad.t() @ input`` and (but for the first layer) the input gradient ``grad @ weight``."""
    with torch.device("meta"):  # shapes only: draws nothing from the global RNG
        layers = [m for m in VAE(INPUT_DIM, p.hidden_dim, p.latent_dim).modules() if isinstance(m, nn.Linear)]
    gen = torch.Generator(device=device).manual_seed(p.seed)
    ops = []
    for i, layer in enumerate(layers):
        w, b, x, g = (torch.rand(shape, generator=gen, device=device) for shape in (
            layer.weight.shape, (layer.out_features,), (p.batch_size, layer.in_features),
            (p.batch_size, layer.out_features)))
        ops += [partial(torch.addmm, b, x, w.t(), out=torch.empty_like(g)),
                partial(torch.mm, g.t(), x, out=torch.empty_like(w))]
        ops += [partial(torch.mm, g, w, out=torch.empty_like(x))] if i else []
    sync(device)
    start = time.perf_counter()
    for _ in range(math.ceil(n_train / p.batch_size)):
        for op in ops:
            op()
    sync(device)
    return time.perf_counter() - start


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steady(values: list[float]) -> float:
    """The median of the second half of the epochs: the per-epoch time once it has stopped changing."""
    return statistics.median(values[len(values) // 2:])


def report(a: Variant, b: Variant, kept: Variant, floor_s: list[float], workers_mib: float) -> bool:
    """Print the table; return whether the final validation losses agree within tolerance."""
    def row(label: str, values: list[float], fmt: str = ".2f", median: bool = True) -> None:
        tail = f"{steady(values):>12{fmt}}" if median else ""
        print(f"{label:<26}" + "".join(f"{v:>8{fmt}}" for v in values) + tail)

    print(f"\n{'':<26}" + "".join(f"{'ep ' + str(e + 1):>8}" for e in range(len(floor_s))) + f"{'steady':>12}")
    ratios = [ta / tb for ta, tb in zip(a.train_s, b.train_s)]
    row("notebook train s", a.train_s)
    row("pipeline train s", b.train_s)
    row("pipeline, subnormals kept", kept.train_s)
    row("kept/flushed", [k / f for k, f in zip(kept.train_s, b.train_s)])
    row("notebook/pipeline", ratios)
    row("GEMM floor s", floor_s)
    row("pipeline/floor", [t / f for t, f in zip(b.train_s, floor_s)])
    row("notebook/floor", [t / f for t, f in zip(a.train_s, floor_s)])
    row("notebook val loss", a.val_loss, ".1f", median=False)
    row("pipeline val loss", b.val_loss, ".1f", median=False)
    print(f"\n{'':<26}{'images/s':>12}{'peak extra MiB':>16}{'data MiB':>12}{'worker MiB':>12}")
    for v, workers in ((a, f"{workers_mib:.0f}"), (b, "-"), (kept, "-")):
        print(f"{v.name:<26}{v.n_train / steady(v.train_s):>12.0f}{v.peak_extra_mib:>16.0f}"
              f"{v.data_mib:>12.0f}{workers:>12}")
    gap = abs(a.val_loss[-1] - b.val_loss[-1])
    print(f"\nsteady state (median of epochs {len(floor_s) // 2 + 1}-{len(floor_s)}): notebook/pipeline "
          f"{steady(ratios):.2f}x; pipeline/floor {steady([t / f for t, f in zip(b.train_s, floor_s)]):.2f}; "
          f"subnormals kept/flushed {steady([k / f for k, f in zip(kept.train_s, b.train_s)]):.2f}")
    print(f"val loss after epoch {len(floor_s)}: difference {gap:.3f} nats -> "
          f"{'OK' if gap <= VAL_TOLERANCE else 'MISMATCH'} (tolerance {VAL_TOLERANCE})")
    return gap <= VAL_TOLERANCE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10,
                        help="epochs per variant (default 10: Adam's first moments turn subnormal from epoch 2 on, "
                             "and the steady state is the median of the second half)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:N]")
    args = parser.parse_args()
    params = load_params()
    device = resolve_device(args.device)
    raw_dir = Path(read_stage("download").outs[0])
    train_npz, val_npz = (Path(d) for d in read_stage("train").deps if d.endswith(("/train.npz", "/val.npz")))
    missing = [str(f) for f in (raw_dir / FILES[0], train_npz) if not f.exists()]
    if missing or params.train_subset or params.dataset_name != "MNIST":
        sys.exit("the benchmark needs MNIST with train_subset: 0 in params.yaml and `dvc repro split` run"
                 + (f" ({', '.join(missing)} missing)" if missing else ""))
    warnings.filterwarnings("ignore", message=".*pin_memory.*")  # the notebook sets it; without a GPU it warns
    print(f"device {device}: {torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}"
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads; torch {torch.__version__}; "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="mnist-") as tmp:
        b = pipeline_variant(train_npz, val_npz, params, device)
        kept = pipeline_variant(train_npz, val_npz, params, device, flush=False)
        a = notebook_variant(raw_dir, Path(tmp), params, device)
        floor_s = []
        for epoch in range(1, args.epochs + 1):
            for variant in (a, b, kept):
                variant.run_epoch(epoch, device)
            flush_subnormals(True)
            floor_s.append(gemm_floor_epoch(b.n_train, params, device))
            print(f"  epoch {epoch} GEMM floor {floor_s[-1]:6.2f} s", flush=True)
    workers_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return 0 if report(a, b, kept, floor_s, workers_mib) else 1


if __name__ == "__main__":
    sys.exit(main())
