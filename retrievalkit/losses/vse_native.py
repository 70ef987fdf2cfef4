"""The VSE++ hinge terms of a small square batch (MH: hardest negatives, costs, tie
test; SH: both cost matrices and ``G``) and MH's gradient products, as fused C loops
on the CPU (``vse_kernel.c``).

At B <= 256 a step of the torch version is mostly per-call dispatch: MH's row and
column maxima, their indices and second values, the costs and the tie test take
about 20 tensor operations over ``[S; S^T]`` and ``[2B]`` vectors, its gradient
products about 15 over ``[B, D]``, SH's costs and ``G`` about 13 over ``[B, B]``.
The kernel does each in one call: one vectorized pass over ``S`` (no transposed
copy), one over the rows of the embeddings. It computes the same values (costs and
``G`` bit for bit: comparisons and the formula's float operations in its order,
the build without -fassociative-math; MH's products in their own order of the same
terms) and is used for float32 CPU tensors only; CUDA, float64 and a machine without
a C compiler take the torch code (see :mod:`retrievalkit.losses.native`).
"""

from __future__ import annotations

import ctypes
import functools

import torch
from torch import Tensor

from retrievalkit.losses.native import enabled, load_library

SOURCE = "vse_kernel.c"
# The costs must keep the formula's float order (see vse_kernel.c): a later flag
# overrides native.FLAGS' -fassociative-math.
EXACT_FLAGS = ("-fno-associative-math",)


@functools.cache
def _kernels() -> tuple[ctypes._CFuncPtr, ctypes._CFuncPtr, ctypes._CFuncPtr] | None:
    """``(vse_hardest, vse_hardest_products, vse_sum_hinges)`` with their argument
    types, or ``None``."""
    library = load_library(SOURCE, EXACT_FLAGS)
    if library is None:
        return None
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    hardest = library.vse_hardest
    hardest.argtypes = [pointer, size, pointer, ctypes.c_float, *[pointer] * 4]
    hardest.restype = ctypes.c_int
    products = library.vse_hardest_products
    products.argtypes = [pointer, pointer, size, size, *[pointer] * 4, ctypes.c_float]
    products.argtypes += [pointer, pointer]
    products.restype = None
    sum_hinges = library.vse_sum_hinges
    sum_hinges.argtypes = [pointer, size, pointer, ctypes.c_float, *[pointer] * 3]
    sum_hinges.restype = ctypes.c_int
    return hardest, products, sum_hinges


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
    (see ``vse_kernel.c``). Call only where :func:`usable` holds for ``sim``.

    Raises:
        MemoryError: the kernel could not allocate its ``5 B`` int32.
    """
    kernels = _kernels()
    assert kernels is not None, "call hardest only where usable() holds"
    num = sim.shape[0]
    vectors = sim.new_empty(2, 2 * num)  # costs, weight
    index = torch.empty(2 * num, dtype=torch.long)
    tied = torch.empty(2 * num, dtype=torch.bool)
    ids = None if ids is None else ids.to(device="cpu", dtype=torch.long).contiguous()
    start = vectors.data_ptr()
    num_tied = kernels[0](
        sim.data_ptr(),
        num,
        None if ids is None else ids.data_ptr(),
        margin,
        start,
        start + 8 * num,
        index.data_ptr(),
        tied.data_ptr(),
    )
    if num_tied < 0:
        raise MemoryError(f"VSE MH kernel: no memory for {5 * num} int32")
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
    # the kernel reads raw [B] arrays: long indices and float32 weights, contiguous
    row_index, col_index = (i.to(torch.long).contiguous() for i in (row_index, col_index))
    row_weight, col_weight = (w.to(torch.float32).contiguous() for w in (row_weight, col_weight))
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


def sum_hinges(sim: Tensor, ids: Tensor | None, margin: float) -> tuple[Tensor, Tensor]:
    """SH value of both directions (vsepp's two cost sums) and ``G = dL/dS [B, B]``,
    written over ``sim [B, B]`` (``ids [B]`` or None: all distinct; see
    ``vse_kernel.c``). The two cost matrices are a scratch freed on return (the next
    step's allocation finds it in the cache). Call only where :func:`usable` holds
    for ``sim``.

    Raises:
        MemoryError: the kernel could not allocate its ``2 B`` floats.
    """
    kernels = _kernels()
    assert kernels is not None, "call sum_hinges only where usable() holds"
    num = sim.shape[0]
    costs = sim.new_empty(2, num, num)  # of image queries, of caption queries
    ids = None if ids is None else ids.to(device="cpu", dtype=torch.long).contiguous()
    start = costs.data_ptr()
    ids_start = None if ids is None else ids.data_ptr()
    grad = sim.data_ptr()
    if kernels[2](grad, num, ids_start, margin, start, start + 4 * num * num, grad) != 0:
        raise MemoryError(f"VSE SH kernel: no memory for {2 * num} floats")
    return costs[0].sum() + costs[1].sum(), sim  # summed as vsepp sums them
