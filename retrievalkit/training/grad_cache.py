"""Gradient caching: a contrastive batch larger than the encoders' activations fit.

A loss over all pairs needs every embedding of the batch at once, but the
encoders' activations are what fills memory. Gradient caching (Gao et al. 2021,
"GradCache") splits the step in three:

1. encode the batch chunk by chunk **without** keeping activations -> the
   embeddings ``[B, E]`` of each tower;
2. compute the loss on them and ``backward`` to the embeddings only (and to the
   loss's own parameters, e.g. the instance classifier): ``dL/d emb``;
3. encode each chunk again **with** activations and back-propagate its slice of
   ``dL/d emb``, one chunk at a time.

Peak memory is one chunk's activations plus the ``B x B`` loss. The parameter
gradients equal those of encoding the same chunks with activations kept (tested
to float64 precision, dropout included): the random state (torch's global
generators and any ``torch.Generator`` held by the models, e.g. the TextCNN's
position shift) is replayed per chunk in step 3. Batch-norm layers in train mode
normalize per chunk, as in any chunked forward; their running statistics are
restored after step 1, so they are updated once per step, not twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

Encoder = Callable[[Any], Tensor]


def chunk_slices(n: int, chunk_size: int) -> list[slice]:
    """``[0, n)`` cut into slices of ``chunk_size`` (the last may be shorter)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return [slice(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]


def _module_generators(modules: Sequence[nn.Module]) -> list[torch.Generator]:
    """``torch.Generator`` attributes of the modules and their children."""
    found: dict[int, torch.Generator] = {}
    for root in modules:
        for module in root.modules():
            for value in vars(module).values():
                if isinstance(value, torch.Generator):
                    found[id(value)] = value
    return list(found.values())


class _RandomState:
    """Snapshot and replay of torch's global RNGs (CPU, CUDA) and module generators."""

    def __init__(self, generators: list[torch.Generator]) -> None:
        self.generators = generators

    def capture(self) -> tuple[Any, ...]:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        return torch.get_rng_state(), cuda, [g.get_state() for g in self.generators]

    def restore(self, state: tuple[Any, ...]) -> None:
        cpu, cuda, generators = state
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        for generator, saved in zip(self.generators, generators, strict=True):
            generator.set_state(saved)


def _batchnorm_buffers(modules: Sequence[nn.Module]) -> list[tuple[Tensor, Tensor]]:
    """``(buffer, saved copy)`` of every batch-norm running statistic."""
    saved = []
    for root in modules:
        for module in root.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                for buffer in module.buffers(recurse=False):
                    saved.append((buffer, buffer.detach().clone()))
    return saved


def grad_cache_backward(
    encoders: Sequence[Encoder],
    inputs: Sequence[Any],
    loss_fn: Callable[[tuple[Tensor, ...]], Any],
    chunk_size: int,
    modules: Sequence[nn.Module] = (),
    total: Callable[[Any], Tensor] = lambda result: result,
    is_finite: Callable[[Any], bool] | None = None,
) -> tuple[tuple[Tensor, ...], Any, bool]:
    """One step's backward with gradient caching (see the module docstring).

    Args:
        encoders: one callable per tower, ``inputs[t][slice] -> [b, E]``.
        inputs: per tower, something sliceable along the batch (a tensor
            ``[B, ...]`` or a list of B captions); all of length B.
        loss_fn: ``(emb_1 [B, E], ...) -> result``; ``total(result)`` is the
            scalar loss to differentiate.
        chunk_size: rows encoded at once.
        modules: the models behind the encoders (their generators are replayed,
            their batch-norm statistics restored after the first pass).
        is_finite: ``result -> bool``, whether to back-propagate (default: the
            total is finite); data-parallel training decides it for all ranks.

    Returns:
        ``(embeddings, result, stepped)``: the detached embeddings, the loss
        result, and whether gradients were accumulated (False when the loss is
        not finite: no parameter receives a gradient then).
    """
    sizes = {len(tower) for tower in inputs}
    if len(sizes) != 1:
        raise ValueError(f"every tower needs the same batch size, got {sorted(sizes)}")
    slices = chunk_slices(sizes.pop(), chunk_size)
    random_state = _RandomState(_module_generators(modules))
    batchnorm = _batchnorm_buffers(modules)

    states: list[list[tuple[Any, ...]]] = []
    embeddings = []
    with torch.no_grad():
        for encode, tower in zip(encoders, inputs, strict=True):
            tower_states, chunks = [], []
            for part in slices:
                tower_states.append(random_state.capture())
                chunks.append(encode(tower[part]))
            states.append(tower_states)
            embeddings.append(torch.cat(chunks).requires_grad_())
    for buffer, saved in batchnorm:
        buffer.copy_(saved)
    after_first_pass = random_state.capture()

    result = loss_fn(tuple(embeddings))
    value = total(result)
    finite = is_finite(result) if is_finite else bool(torch.isfinite(value.detach()).all())
    if not finite:
        return tuple(e.detach() for e in embeddings), result, False
    value.backward()
    for encode, tower, emb, tower_states in zip(encoders, inputs, embeddings, states, strict=True):
        if emb.grad is None:  # the loss does not depend on this tower
            continue
        for part, state in zip(slices, tower_states, strict=True):
            random_state.restore(state)
            encode(tower[part]).backward(emb.grad[part])
    random_state.restore(after_first_pass)
    return tuple(e.detach() for e in embeddings), result, True
