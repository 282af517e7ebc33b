"""Float32 matrix products on numpy's OpenBLAS, for ``numerics: portable`` (``vae.numerics``).

MKL runs other kernels on an Intel CPU than on an AMD one, and its one branch that both run
alike (``MKL_CBWR=COMPATIBLE``) made training twice as slow. OpenBLAS chooses its kernels and
block sizes by the core type it is told (``OPENBLAS_CORETYPE=Haswell``), never by the vendor.

``PortableProducts`` registers, with ``torch.library``, numpy's OpenBLAS sgemm as PyTorch's CPU
kernel of ``aten::mm`` and ``aten::addmm``, the products under ``nn.Linear``, ``@`` and their
gradients; and, for ``aten::conv2d`` and ``aten::conv_transpose2d``, their unfold (or fold) and
one such product. Autograd keeps PyTorch's own formulas (in C++: no Python between the engine
and each product), nothing else goes through Python, and the models keep their layers and state
dicts. Products these kernels do not take (another dtype, alpha or beta other than 1, grouped
convolutions, sizes that do not fit, whose error PyTorch words) run PyTorch's own kernels, whose
MKL products ``MKL_CBWR=COMPATIBLE`` keeps portable, only slower.
"""

from types import TracebackType

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair


def sgemm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for float32 CPU matrices, by numpy's OpenBLAS (transposed views reach it as BLAS flags)."""
    out = torch.empty(a.shape[0], b.shape[1])
    np.matmul(a.detach().numpy(), b.detach().numpy(), out=out.numpy())
    return out


def _sgemm_takes(*tensors: torch.Tensor | None) -> bool:
    """Whether every given tensor is a plain float32 CPU tensor (what OpenBLAS's sgemm multiplies)."""
    return all(t is None or (t.dtype == torch.float32 and t.layout == torch.strided and not t.is_conj()
                             and not t.is_neg() and t.device.type == "cpu") for t in tensors)


def _multiplies(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``sgemm`` takes a @ b: float32 matrices whose inner sizes agree (PyTorch words the errors)."""
    return a.dim() == 2 == b.dim() and a.shape[1] == b.shape[0] and _sgemm_takes(a, b)


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``aten::mm``'s CPU kernel: OpenBLAS for float32; the rest on PyTorch's (``mm.out``, not replaced)."""
    if _multiplies(a, b):
        return sgemm(a, b)
    return torch.ops.aten.mm.out(a, b, out=a.new_empty(0))


def _addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta: float = 1,
           alpha: float = 1) -> torch.Tensor:
    """``aten::addmm``'s CPU kernel: the product on OpenBLAS, then the bias added (as ``F.linear`` gives it)."""
    if beta == 1 and alpha == 1 and _multiplies(a, b) and _sgemm_takes(bias):
        return sgemm(a, b).add_(bias)
    return torch.ops.aten.addmm.out(bias, a, b, beta=beta, alpha=alpha, out=a.new_empty(0))


def _unfolds(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, groups: int, channels: int) -> bool:
    """Whether a convolution goes through unfold and ``sgemm``: float32, one group and the channels its weight
    expects; PyTorch's own kernel takes the others (and words the error of a wrong channel count)."""
    return groups == 1 and x.shape[1] == channels and _sgemm_takes(x, weight, bias)


def _conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int | list[int] = 1,
            padding: int | list[int] = 0, dilation: int | list[int] = 1, groups: int = 1) -> torch.Tensor:
    """``aten::conv2d`` as im2col (``F.unfold``) and one product: rows of patches times the flat filters."""
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)  # the schema's defaults are ints
    if x.dim() == 3:  # one unbatched image
        return _conv2d(x.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    if x.dim() != 4 or not _unfolds(x, weight, bias, groups, weight.shape[1]):
        return torch.ops.aten.convolution(x, weight, bias, stride, padding, dilation, False, [0, 0], groups)
    n, (o, _, kh, kw) = len(x), weight.shape
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # (N, C kh kw, L)
    (h, w), (ph, pw), (sh, sw), (dh, dw) = x.shape[-2:], padding, stride, dilation
    out_h, out_w = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = F.linear(cols.transpose(1, 2), weight.reshape(o, -1), bias)  # (N, L, O)
    return out.transpose(1, 2).reshape(n, o, out_h, out_w)


def _conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                      stride: int | list[int] = 1, padding: int | list[int] = 0,
                      output_padding: int | list[int] = 0, groups: int = 1,
                      dilation: int | list[int] = 1) -> torch.Tensor:
    """``aten::conv_transpose2d`` as one product (each pixel's channels times the filters) and col2im (``F.fold``)."""
    stride, padding, output_padding, dilation = map(_pair, (stride, padding, output_padding, dilation))
    if x.dim() == 3:  # one unbatched image
        return _conv_transpose2d(x.unsqueeze(0), weight, bias, stride, padding, output_padding, groups,
                                 dilation).squeeze(0)
    if x.dim() != 4 or not _unfolds(x, weight, bias, groups, weight.shape[0]):
        return torch.ops.aten.convolution(x, weight, bias, stride, padding, dilation, True, output_padding, groups)
    n, (c, o, kh, kw) = len(x), weight.shape
    (h, w), (ph, pw), (sh, sw), (dh, dw), (oph, opw) = x.shape[-2:], padding, stride, dilation, output_padding
    size = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1, (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    # The flat filters as a column-major operand: PyTorch's mm backward then takes their gradient as
    # (grad.T @ pixels).T, the operand order the committed bytes were made with (OpenBLAS rounds the
    # swapped order differently; a transposed operand alone changes nothing).
    filters = weight.reshape(c, -1).t().contiguous()  # (O kh kw, C)
    cols = F.linear(x.reshape(n, c, h * w).transpose(1, 2), filters)  # (N, L, O kh kw)
    out = F.fold(cols.transpose(1, 2), size, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    return out if bias is None else out + bias.reshape(1, o, 1, 1)


# The products are backend (CPU) kernels, below autograd; the convolutions replace PyTorch's
# decomposition (CompositeImplicitAutograd), so autograd records their unfold and product.
KERNELS = (("mm", _mm, "CPU"), ("addmm", _addmm, "CPU"), ("conv2d", _conv2d, "CompositeImplicitAutograd"),
           ("conv_transpose2d.input", _conv_transpose2d, "CompositeImplicitAutograd"))


class PortableProducts:
    """While entered, PyTorch's float32 CPU products run on ``KERNELS`` (numpy's OpenBLAS); on exit, on its own."""

    def __init__(self) -> None:
        self._library: torch.library.Library | None = None

    def __enter__(self) -> "PortableProducts":
        self._library = torch.library.Library("aten", "IMPL")
        for name, kernel, key in KERNELS:
            self._library.impl(name, kernel, key)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._library._destroy()  # PyTorch's own kernels come back
        self._library = None
