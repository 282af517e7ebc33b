"""Float32 matrix products on numpy's OpenBLAS, for ``numerics: portable`` (``vae.numerics``).

MKL runs other kernels on an Intel CPU than on an AMD one, and its one branch that both run
alike (``MKL_CBWR=COMPATIBLE``) made training twice as slow. OpenBLAS chooses its kernels and
block sizes by the core type it is told (``OPENBLAS_CORETYPE=Haswell``), never by the vendor.
``linear`` is a PyTorch custom operator, ``vae::linear`` (x @ weight.T, its gradients on the same
operator), and ``PortableProducts``, a ``TorchFunctionMode``, sends every float32 CPU product of
the layers to it: ``F.linear`` (``nn.Linear``), ``F.conv2d`` and ``F.conv_transpose2d`` (as
unfold or fold and one product) and ``@`` with a matrix on the right. Models keep their
``nn.Linear`` and ``nn.Conv2d`` layers, and their state dicts, unchanged.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair
from torch.overrides import TorchFunctionMode


@torch.library.custom_op("vae::linear", mutates_args=())
def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x @ weight.T for x (N, K) and weight (O, K), float32 on the CPU, by numpy's OpenBLAS sgemm."""
    out = torch.empty(x.shape[0], weight.shape[0], dtype=x.dtype)
    np.matmul(x.numpy(), weight.numpy().T, out=out.numpy())  # transposed views go to BLAS as flags
    return out


@linear.register_fake
def _(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[0])


def _save_inputs(ctx: torch.autograd.function.FunctionCtx, inputs: tuple[torch.Tensor, ...],
                 output: torch.Tensor) -> None:
    ctx.save_for_backward(*inputs)


def _linear_backward(ctx: torch.autograd.function.FunctionCtx,
                     grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """dx = grad @ weight and dweight = grad.T @ x, each one more ``vae::linear`` (OpenBLAS too)."""
    x, weight = ctx.saved_tensors
    grad_x = linear(grad, weight.t()) if ctx.needs_input_grad[0] else None
    grad_weight = linear(grad.t(), x.t()) if ctx.needs_input_grad[1] else None
    return grad_x, grad_weight


linear.register_autograd(_linear_backward, setup_context=_save_inputs)


def _portable(*tensors: torch.Tensor | None) -> bool:
    """Whether every given tensor is float32 on the CPU (what OpenBLAS's sgemm multiplies)."""
    return all(t is None or (isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.device.type == "cpu")
               for t in tensors)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` on ``vae::linear``: any leading dimensions, the bias added after the product."""
    if x.dim() == 2:
        out = linear(x, weight)
    else:
        out = linear(x.reshape(-1, x.shape[-1]), weight).reshape(*x.shape[:-1], weight.shape[0])
    return out if bias is None else out + bias


def _conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1,
            padding: int = 0, dilation: int = 1) -> torch.Tensor:
    """``F.conv2d`` as im2col (``F.unfold``) and one product: rows of patches times the flat filters."""
    n, (o, _, kh, kw) = len(x), weight.shape
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # (N, C kh kw, L)
    (h, w), (ph, pw), (sh, sw), (dh, dw) = x.shape[-2:], _pair(padding), _pair(stride), _pair(dilation)
    out_h, out_w = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = _linear(cols.transpose(1, 2), weight.reshape(o, -1), bias)  # (N, L, O)
    return out.transpose(1, 2).reshape(n, o, out_h, out_w)


def _conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1,
                      padding: int = 0, output_padding: int = 0, dilation: int = 1) -> torch.Tensor:
    """``F.conv_transpose2d`` as one product (each pixel's channels times the filters) and col2im (``F.fold``)."""
    n, (c, o, kh, kw) = len(x), weight.shape
    (h, w), (ph, pw), (sh, sw), (dh, dw) = x.shape[-2:], _pair(padding), _pair(stride), _pair(dilation)
    oph, opw = _pair(output_padding)
    size = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1, (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    cols = _linear(x.reshape(n, c, h * w).transpose(1, 2), weight.reshape(c, -1).t())  # (N, L, O kh kw)
    out = F.fold(cols.transpose(1, 2), size, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    return out if bias is None else out + bias.reshape(1, o, 1, 1)


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for a matrix ``b``: ``F.linear`` with weight b.T."""
    return _linear(a, b.t())


class PortableProducts(TorchFunctionMode):
    """Sends float32 CPU matrix products to ``vae::linear``; everything else runs as PyTorch would.

    Products it cannot take (other dtypes, grouped or padded-by-name convolutions, unbatched
    inputs, a vector on the right of ``@``) go to PyTorch, whose MKL products stay pinned to
    ``MKL_CBWR=COMPATIBLE`` in portable mode, so they are portable too, only slower.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (PyTorch's protocol)
        kwargs = kwargs or {}
        route = _ROUTES.get(func)
        if route is not None:
            taken = route(*args, **kwargs)
            if taken is not None:
                return taken
        return func(*args, **kwargs)


def _route_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor | None:
    return _linear(x, weight, bias) if _portable(x, weight, bias) and x.dim() >= 1 else None


def _route_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1,
                  padding: int | str = 0, dilation: int = 1, groups: int = 1) -> torch.Tensor | None:
    if not _portable(x, weight, bias) or groups != 1 or isinstance(padding, str) or x.dim() != 4:
        return None
    return _conv2d(x, weight, bias, stride, padding, dilation)


def _route_conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                            stride: int = 1, padding: int = 0, output_padding: int = 0, groups: int = 1,
                            dilation: int = 1) -> torch.Tensor | None:
    if not _portable(x, weight, bias) or groups != 1 or x.dim() != 4:
        return None
    return _conv_transpose2d(x, weight, bias, stride, padding, output_padding, dilation)


def _route_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    return _matmul(a, b) if _portable(a, b) and a.dim() >= 1 and b.dim() == 2 else None


def _route_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    return _matmul(a, b) if _portable(a, b) and a.dim() == 2 and b.dim() == 2 else None


_ROUTES = {F.linear: _route_linear, F.conv2d: _route_conv2d, F.conv_transpose2d: _route_conv_transpose2d,
           torch.matmul: _route_matmul, torch.Tensor.matmul: _route_matmul, torch.Tensor.__matmul__: _route_matmul,
           torch.mm: _route_mm, torch.Tensor.mm: _route_mm}
