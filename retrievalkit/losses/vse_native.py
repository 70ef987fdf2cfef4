"""The VSE++ MH terms of a small square batch and their gradient products as fused
C loops on the CPU (``vse_kernel.c``).

At B <= 256 a step of the torch version is mostly per-call dispatch: the row and
column maxima, their indices and second values, the costs and the tie test take
about 20 tensor operations over ``[S; S^T]`` and ``[2B]`` vectors, the gradient
products about 15 over ``[B, D]``. The kernel does each in one call: one pass over
``S`` (no transposed copy) and one over the rows of the embeddings. It computes the
same values (the costs bit for bit: comparisons and the formula's two float
operations in its order; the products in its own order of the same terms) and is
used for float32 CPU tensors only; CUDA, float64 and a machine without a C compiler
take the torch code (see :mod:`retrievalkit.losses.native`).
"""

from __future__ import annotations

import ctypes
import functools

import torch
from torch import Tensor

from retrievalkit.losses.native import enabled, load_library

SOURCE = "vse_kernel.c"


@functools.cache
def _kernels() -> tuple[ctypes._CFuncPtr, ctypes._CFuncPtr] | None:
    """``(vse_hardest, vse_hardest_products)`` with their argument types, or ``None``."""
    library = load_library(SOURCE)
    if library is None:
        return None
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    hardest = library.vse_hardest
    hardest.argtypes = [pointer, size, pointer, ctypes.c_float, *[pointer] * 6]
    hardest.restype = ctypes.c_int
    products = library.vse_hardest_products
    products.argtypes = [pointer, pointer, size, size, *[pointer] * 4, ctypes.c_float]
    products.argtypes += [pointer, pointer]
    products.restype = None
    return hardest, products


def usable(*tensors: Tensor) -> bool:
    """Whether the kernels can run on ``tensors``: contiguous float32 CPU tensors,
    the kernels not turned off and a built library."""
    return (
        all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and all(t.is_contiguous() for t in tensors)
        and enabled()
        and _kernels() is not None
    )


def hardest(
    sim: Tensor, ids: Tensor | None, margin: float
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Per query of ``[S; S^T]`` (``sim [B, B]``, ``ids [B]`` or None: all distinct):
    ``(costs [2B], weight [2B] (0/1), index [2B] (long), tied [2B] (bool), num_tied)``
    (see ``vse_kernel.c``). Call only where :func:`usable` holds for ``sim``."""
    kernels = _kernels()
    assert kernels is not None, "call hardest only where usable() holds"
    num = sim.shape[0]
    vectors = sim.new_empty(4, 2 * num)  # costs, weight, and the kernel's scratch
    index = torch.empty(2 * num, dtype=torch.long)
    tied = torch.empty(2 * num, dtype=torch.bool)
    ids = None if ids is None else ids.to(device="cpu", dtype=torch.long).contiguous()
    num_tied = kernels[0](
        sim.data_ptr(),
        num,
        None if ids is None else ids.data_ptr(),
        margin,
        vectors[0].data_ptr(),
        vectors[1].data_ptr(),
        index.data_ptr(),
        tied.data_ptr(),
        vectors[2].data_ptr(),
        vectors[3].data_ptr(),
    )
    return vectors[0], vectors[1], index, tied, num_tied


def hardest_products(
    img: Tensor,
    txt: Tensor,
    row_index: Tensor,
    row_weight: Tensor,
    col_index: Tensor,
    col_weight: Tensor,
    scale: float,
) -> tuple[Tensor, Tensor]:
    """``scale * (G txt, G^T img)`` for the MH gradient ``G`` of a square
    ``img txt^T`` (``+w`` at each query's hardest negative, ``-w`` on its diagonal;
    ``[B]`` indices (long) and weights). Call only where :func:`usable` holds for
    every argument."""
    kernels = _kernels()
    assert kernels is not None, "call hardest_products only where usable() holds"
    d_img, d_txt = torch.empty_like(img), torch.empty_like(txt)
    kernels[1](
        img.data_ptr(),
        txt.data_ptr(),
        img.shape[0],
        img.shape[1],
        row_index.data_ptr(),
        row_weight.data_ptr(),
        col_index.data_ptr(),
        col_weight.data_ptr(),
        scale,
        d_img.data_ptr(),
        d_txt.data_ptr(),
    )
    return d_img, d_txt
