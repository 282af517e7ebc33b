"""Training speed: the notebook's loop against the train stage's, in float32 and bf16, each against its GEMM floor.

Run from the repository root after `dvc repro split`::

    python -m benchmarks.train_speed [--epochs N] [--device auto|cpu|cuda]

The loops train ``vae.model.VAE`` with params.yaml's settings (batch size, lr, seed, model
sizes, validation fraction) on the files dvc.yaml names (the download stage's IDX files for
the notebook, the split stage's ``.npz`` for the pipeline), in one process, alternating
epochs so that all see the same machine load.

``notebook``: the notebook's loop as written (``datasets.MNIST`` + ``ToTensor``,
``random_split``, ``DataLoader(num_workers=2, pin_memory=True)``, ``.item()`` per batch,
``BCELoss(reduction="sum")`` + KL). ``pipeline``: ``vae.training.train_epoch`` and
``evaluate_elbo`` on the split held as one tensor, subnormal floats flushed to zero as every
stage does, in float32 (``precision: 32-true``); ``pipeline kept``: the same loop with IEEE
subnormals kept (the cost that the flush removes: large on Intel cores, small on AMD's);
``pipeline bf16``: the same loop with ``precision: bf16-mixed`` (the forward pass under autocast
to bfloat16). ``GEMM floor``: the epoch's matrix multiplies alone (every forward ``addmm`` and
backward ``mm``, same shapes, preallocated outputs), in float32 and in bfloat16; no loop in that
precision can beat its floor, so ``pipeline/floor`` is the stable figure across machines and
``notebook/floor`` bounds any speed-up. ``bf16/fp32`` compares the precisions: the pipeline's
epochs, and the floors (what bfloat16 can gain at most: about 2x with native bfloat16 products,
AVX512-BF16 or AMX on CPUs; a loss where they are emulated). The pipeline's loops and the
floors are warmed up before the first timed epoch (the first bfloat16 products after start-up
are slower).
``peak extra MiB``: the rise of peak resident memory over each variant's epochs (CPU) or CUDA's
peak allocation; ``worker MiB``: the largest DataLoader worker's peak RSS. Every per-epoch time
is printed; the summary is the steady state, the median of the second half of the epochs (the
first epochs are faster: Adam's moments have not yet decayed into subnormals). The validation
losses after the last epoch, the notebook's against the pipeline's and bf16's against float32's,
must agree within 1.5 nats (different batch order and noise, or rounding), else the exit code is 1.
"""

import argparse
import dataclasses
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

from benchmarks import bf16_note
from vae.data.datasets import FILES
from vae.data.split import load_split, to_tensor
from vae.model import VAE, VAEConfig
from vae.params import Params, load_params, resolve_device
from vae.runtime.dvc_yaml import PARAMS_FILE, read_stage
from vae.runtime.machine import flush_subnormals
from vae.training import TrainingSettings, TrainState, evaluate_elbo, train_epoch

VAL_TOLERANCE = 1.5  # nats per image
MIB = 2**20
WARM_UP_STEPS = 20  # training steps (and floor batches) run untimed before the first timed epoch


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
    flush: bool  # subnormal floats flushed to zero during its epochs (vae.runtime.machine.flush_subnormals)
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
    model = VAE(VAEConfig(hidden_dim=p.hidden_dim, latent_dim=p.latent_dim)).to(device)
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


def pipeline_variant(train_npz: Path, val_npz: Path, p: Params, device: torch.device, name: str = "pipeline",
                     flush: bool = True, precision: str = "32-true") -> Variant:
    """The train stage's loop in ``precision``, warmed up; with ``flush=False`` as it ran before subnormals were
    flushed. The warm-up trains a throwaway model: the measured one starts from the seed's weights."""
    train_x, val_x = (to_tensor(load_split(path)[0], device) for path in (train_npz, val_npz))
    settings = dataclasses.replace(TrainingSettings.from_params(p), precision=precision)
    spare = TrainState.new(VAEConfig.from_params(p), settings, device)
    train_epoch(spare, train_x[:WARM_UP_STEPS * settings.batch_size], 1, settings, progress=False)
    state = TrainState.new(VAEConfig.from_params(p), settings, device)
    return Variant(name, lambda e: train_epoch(state, train_x, e, settings, progress=False),
                   lambda: evaluate_elbo(state.model, val_x, p.seed)["loss"], len(train_x),
                   (train_x.nbytes + val_x.nbytes) / MIB, flush)


@dataclass
class GemmFloor:
    """One training step's matrix multiplies in a dtype: per layer the forward ``addmm``, the weight gradient
    ``grad.t() @ input`` and (but for the first layer) the input gradient ``grad @ weight``."""

    name: str
    ops: list[Callable[[], torch.Tensor]]
    epoch_s: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, p: Params, device: torch.device, dtype: torch.dtype) -> "GemmFloor":
        """The step's products at params.yaml's sizes in ``dtype``, warmed up."""
        with torch.device("meta"):  # shapes only: draws nothing from the global RNG
            model = VAE(VAEConfig(hidden_dim=p.hidden_dim, latent_dim=p.latent_dim))
            layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        gen = torch.Generator(device=device).manual_seed(p.seed)
        ops = []
        for i, layer in enumerate(layers):
            w, b, x, g = (torch.rand(shape, generator=gen, device=device).to(dtype) for shape in (
                layer.weight.shape, (layer.out_features,), (p.batch_size, layer.in_features),
                (p.batch_size, layer.out_features)))
            ops += [partial(torch.addmm, b, x, w.t(), out=torch.empty_like(g)),
                    partial(torch.mm, g.t(), x, out=torch.empty_like(w))]
            ops += [partial(torch.mm, g, w, out=torch.empty_like(x))] if i else []
        floor = cls(name, ops)
        floor.run(WARM_UP_STEPS)
        return floor

    @torch.no_grad()
    def run(self, steps: int) -> None:
        for _ in range(steps):
            for op in self.ops:
                op()

    def time_epoch(self, n_train: int, batch_size: int, device: torch.device) -> None:
        """Seconds for one epoch's matrix multiplies, appended to ``epoch_s``."""
        sync(device)
        start = time.perf_counter()
        self.run(math.ceil(n_train / batch_size))
        sync(device)
        self.epoch_s.append(time.perf_counter() - start)
        print(f"  epoch {len(self.epoch_s)} {self.name:<15} {self.epoch_s[-1]:7.2f} s", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steady(values: list[float]) -> float:
    """The median of the second half of the epochs: the per-epoch time once it has stopped changing."""
    return statistics.median(values[len(values) // 2:])


def ratios(a: list[float], b: list[float]) -> list[float]:
    """``a / b`` epoch by epoch."""
    return [x / y for x, y in zip(a, b)]


def report(variants: dict[str, Variant], floors: dict[str, GemmFloor], workers_mib: float) -> bool:
    """Print the table; return whether the final validation losses agree within tolerance."""
    nb, fp32, kept, bf16 = (variants[name] for name in ("notebook", "pipeline", "pipeline kept", "pipeline bf16"))
    floor, floor16 = floors["float32"].epoch_s, floors["bfloat16"].epoch_s
    epochs = len(floor)

    def row(label: str, values: list[float], fmt: str = ".2f", median: bool = True) -> None:
        tail = f"{steady(values):>12{fmt}}" if median else ""
        print(f"{label:<26}" + "".join(f"{v:>8{fmt}}" for v in values) + tail)

    print(f"\n{'':<26}" + "".join(f"{'ep ' + str(e + 1):>8}" for e in range(epochs)) + f"{'steady':>12}")
    row("notebook train s", nb.train_s)
    row("pipeline train s", fp32.train_s)
    row("pipeline, subnormals kept", kept.train_s)
    row("pipeline bf16 train s", bf16.train_s)
    row("kept/flushed", ratios(kept.train_s, fp32.train_s))
    row("notebook/pipeline", ratios(nb.train_s, fp32.train_s))
    row("bf16/fp32 pipeline", ratios(bf16.train_s, fp32.train_s))
    row("GEMM floor s", floor)
    row("bf16 GEMM floor s", floor16)
    row("bf16/fp32 floor", ratios(floor16, floor))
    row("pipeline/floor", ratios(fp32.train_s, floor))
    row("pipeline bf16/bf16 floor", ratios(bf16.train_s, floor16))
    row("notebook/floor", ratios(nb.train_s, floor))
    for v in (nb, fp32, bf16):
        row(f"{v.name} val loss", v.val_loss, ".1f", median=False)
    print(f"\n{'':<26}{'images/s':>12}{'peak extra MiB':>16}{'data MiB':>12}{'worker MiB':>12}")
    for v in variants.values():
        workers = f"{workers_mib:.0f}" if v is nb else "-"
        print(f"{v.name:<26}{v.n_train / steady(v.train_s):>12.0f}{v.peak_extra_mib:>16.0f}"
              f"{v.data_mib:>12.0f}{workers:>12}")
    print(f"\nsteady state (median of epochs {epochs // 2 + 1}-{epochs}): notebook/pipeline "
          f"{steady(ratios(nb.train_s, fp32.train_s)):.2f}x; pipeline/floor {steady(ratios(fp32.train_s, floor)):.2f}; "
          f"subnormals kept/flushed {steady(ratios(kept.train_s, fp32.train_s)):.2f}")
    print(f"bf16/fp32: epoch {steady(ratios(bf16.train_s, fp32.train_s)):.2f} ({steady(bf16.train_s):.2f} s against "
          f"{steady(fp32.train_s):.2f} s), GEMM floor {steady(ratios(floor16, floor)):.2f}; pipeline bf16/bf16 floor "
          f"{steady(ratios(bf16.train_s, floor16)):.2f}, pipeline/floor {steady(ratios(fp32.train_s, floor)):.2f}")
    agree = True
    for a, b in ((nb, fp32), (bf16, fp32)):
        gap = abs(a.val_loss[-1] - b.val_loss[-1])
        agree &= gap <= VAL_TOLERANCE
        print(f"val loss after epoch {epochs}, {a.name} against {b.name}: difference {gap:.3f} nats -> "
              f"{'OK' if gap <= VAL_TOLERANCE else 'MISMATCH'} (tolerance {VAL_TOLERANCE})")
    return agree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10,
                        help="epochs per variant (default 10: Adam's first moments turn subnormal from epoch 2 on, "
                             "and the steady state is the median of the second half)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:N]")
    args = parser.parse_args()
    params = load_params(PARAMS_FILE)
    device = resolve_device(args.device)
    raw_dir = Path(read_stage("download").outs[0])
    train_npz, val_npz = (Path(d) for d in read_stage("train").deps if d.endswith(("/train.npz", "/val.npz")))
    missing = [str(f) for f in (raw_dir / FILES[0], train_npz) if not f.exists()]
    if missing or params.train_subset or params.dataset_name != "MNIST":
        sys.exit("the benchmark needs MNIST with train_subset: 0 in params.yaml and `dvc repro split` run"
                 + (f" ({', '.join(missing)} missing)" if missing else ""))
    warnings.filterwarnings("ignore", message=".*pin_memory.*")  # the notebook sets it; without a GPU it warns
    print(f"device {device}: {torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}"
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, {bf16_note(device)}; "
          f"torch {torch.__version__}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="mnist-") as tmp:
        flush_subnormals(True)
        pipelines = [pipeline_variant(train_npz, val_npz, params, device),
                     pipeline_variant(train_npz, val_npz, params, device, "pipeline kept", flush=False),
                     pipeline_variant(train_npz, val_npz, params, device, "pipeline bf16", precision="bf16-mixed")]
        floors = {"float32": GemmFloor.of("GEMM floor", params, device, torch.float32),
                  "bfloat16": GemmFloor.of("bf16 GEMM floor", params, device, torch.bfloat16)}
        # The notebook last: it seeds the global RNG that its loop draws from (the pipeline's draw from generators)
        notebook = notebook_variant(raw_dir, Path(tmp), params, device)
        variants = {v.name: v for v in (notebook, *pipelines)}
        n_train = notebook.n_train
        for epoch in range(1, args.epochs + 1):
            for variant in variants.values():
                variant.run_epoch(epoch, device)
            flush_subnormals(True)
            for floor in floors.values():
                floor.time_epoch(n_train, params.batch_size, device)
    workers_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return 0 if report(variants, floors, workers_mib) else 1


if __name__ == "__main__":
    sys.exit(main())
