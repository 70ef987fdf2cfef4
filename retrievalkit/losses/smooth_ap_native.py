"""Smooth-AP's group pass as one fused C kernel on the CPU (``smooth_ap_kernel.c``).

The torch version of the pass (:func:`retrievalkit.losses.smooth_ap._group_pass`)
goes over each ``[chunk, k, R]`` sigmoid block six times (difference, sigmoid,
two sums, the sigmoid's derivative, a third sum); the kernel reads a query's row
once, keeps its ``k x R`` sigmoids in a per-thread scratch (``k R`` floats, in
the cache) and writes the gradient row from it: one exponential per term and
no ``B x k x R`` temporaries. It computes the same values (float32; its
exponential is within about one ulp of torch's) and is used for float32 CPU
tensors only; CUDA, float64 and a machine without a C compiler take the torch
code (see :mod:`retrievalkit.losses.native`).
"""

from __future__ import annotations

import ctypes
import functools

import torch
from torch import Tensor

from retrievalkit.losses.native import enabled, load_library

SOURCE = "smooth_ap_kernel.c"
# Largest per-thread scratch (k R floats) the kernel is given; above it (a class
# with thousands of samples in the batch) the torch code's fixed buffer is used.
MAX_SCRATCH_BYTES = 64 << 20
# Terms (k R per query) a thread should get before a second thread pays off.
TERMS_PER_THREAD = 1 << 18


@functools.cache
def _kernel() -> ctypes._CFuncPtr | None:
    """The kernel with its argument types, or ``None`` (no library)."""
    library = load_library(SOURCE)
    if library is None:
        return None
    fn = library.smooth_ap_group
    fn.argtypes = [
        ctypes.c_void_p,  # logits [B, R]
        ctypes.c_void_p,  # grad [B, R] or NULL
        ctypes.c_int64,  # R
        ctypes.c_void_p,  # rows [Q]
        ctypes.c_void_p,  # pos [Q, k]
        ctypes.c_int64,  # Q
        ctypes.c_int64,  # k
        ctypes.c_void_p,  # weight [Q] or NULL
        ctypes.c_float,  # 1 / tau
        ctypes.c_void_p,  # ap [Q]
        ctypes.c_int,  # threads
    ]
    fn.restype = ctypes.c_int
    return fn


def usable(logits: Tensor, k: int) -> bool:
    """Whether the kernel can run on ``logits [B, R]`` with ``k`` positives a query:
    a contiguous float32 CPU tensor, a scratch within :data:`MAX_SCRATCH_BYTES`,
    the kernels not turned off and a built library."""
    return (
        enabled()
        and logits.device.type == "cpu"
        and logits.dtype == torch.float32
        and logits.is_contiguous()
        and 4 * k * logits.shape[1] <= MAX_SCRATCH_BYTES
        and _kernel() is not None
    )


def group_ap(
    logits: Tensor, rows: Tensor, pos_idx: Tensor, inv_tau: float, weight: Tensor | None = None
) -> Tensor:
    """``AP [Q]`` of the queries ``rows [Q]`` (long) with positive columns ``pos_idx
    [Q, k]`` (long), from ``logits [B, R]`` = ``S / tau`` (own column at ``-inf``
    when excluded). With ``weight [Q]``, ``d(sum_q weight_q AP_q) / dS`` is written
    over the rows ``rows`` of ``logits`` (each row is read before it is written).
    Call only where :func:`usable` holds.

    Raises:
        MemoryError: the kernel could not allocate its scratch or start a thread.
    """
    fn = _kernel()
    assert fn is not None, "call group_ap only where usable() holds"
    num_queries, k = pos_idx.shape
    rows = rows.contiguous()
    pos_idx = pos_idx.contiguous()
    ap = logits.new_empty(num_queries)
    if weight is not None:
        weight = weight.to(torch.float32).contiguous()
    terms = num_queries * k * logits.shape[1]
    threads = max(1, min(torch.get_num_threads(), terms // TERMS_PER_THREAD))
    status = fn(
        logits.data_ptr(),
        None if weight is None else logits.data_ptr(),
        logits.shape[1],
        rows.data_ptr(),
        pos_idx.data_ptr(),
        num_queries,
        k,
        None if weight is None else weight.data_ptr(),
        inv_tau,
        ap.data_ptr(),
        threads,
    )
    if status != 0:
        raise MemoryError(f"Smooth-AP kernel: no memory for a {k} x {logits.shape[1]} scratch")
    return ap
