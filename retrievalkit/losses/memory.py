"""Cross-batch memory: past embeddings as extra references for a loss.

Order (defined, tested): each call computes the loss of the batch against the
memory as it was BEFORE the call, then enqueues the batch (detached) into a
ring buffer, overwriting the oldest entries first. During the first
``warmup_steps`` calls the memory is filled but not used. Only ``B x (B + M)``
similarities are computed. The queues, their labels, the write position, the
fill count and the step count are buffers, so checkpoints keep them.

- :class:`CrossBatchMemory` wraps a metric-learning loss (one queue of
  embeddings + labels; the batch's self-pairs are excluded by the loss, memory
  entries are other samples).
- :class:`CrossModalMemory` wraps :class:`~retrievalkit.losses.vse.VSELoss` (or
  :class:`~retrievalkit.losses.clip.ClipLoss`, same reference arguments): one
  queue per modality with the image ids (PML#373): the batch's images are also
  ranked against past captions and its captions against past images; a past
  entry with the same image id is never a negative.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from retrievalkit.losses.core import PairLoss


class EmbeddingQueue(nn.Module):
    """Ring buffer of ``size`` rows: one ``[size, dim]`` queue per name, shared labels."""

    def __init__(self, names: tuple[str, ...], dim: int, size: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"memory_size must be at least 1, got {size}")
        self.names, self.size = names, size
        for name in names:
            self.register_buffer(name, torch.zeros(size, dim))
        self.register_buffer("labels", torch.zeros(size, dtype=torch.long))
        self.register_buffer("position", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def contents(self) -> tuple[list[Tensor], Tensor]:
        """The stored ``[M', dim]`` rows of each queue and ``[M']`` labels, oldest first."""
        filled = int(self.filled)
        if filled < self.size:
            rows: Tensor | slice = slice(0, filled)
        else:
            start = int(self.position)
            rows = torch.arange(start, start + self.size, device=self.labels.device) % self.size
        return [getattr(self, name)[rows] for name in self.names], self.labels[rows]

    @torch.no_grad()
    def enqueue(self, values: list[Tensor], labels: Tensor) -> None:
        """Write a batch at the ring position (a batch larger than the memory keeps its tail)."""
        labels = labels[-self.size :]
        n = labels.shape[0]
        slots = (torch.arange(n, device=self.labels.device) + self.position) % self.size
        for name, value in zip(self.names, values, strict=True):
            queue = getattr(self, name)
            queue[slots] = value[-self.size :].detach().to(queue.dtype)
        self.labels[slots] = labels.to(self.labels.device)
        self.position.copy_((self.position + n) % self.size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.size))


class _MemoryWrapper(nn.Module):
    """The shared part of the memory wrappers: a queue, a warm-up and a step count."""

    def __init__(
        self, names: tuple[str, ...], embedding_dim: int, memory_size: int, warmup_steps: int
    ) -> None:
        super().__init__()
        self.queue = EmbeddingQueue(names, embedding_dim, memory_size)
        self.warmup_steps = warmup_steps
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def _memory_in_use(self) -> bool:
        """Past the warm-up and holding something: this call uses the memory."""
        return int(self.steps) >= self.warmup_steps and int(self.queue.filled) > 0

    def _store(self, values: list[Tensor], labels: Tensor) -> None:
        """After the loss: enqueue the batch (detached) and count the step."""
        self.queue.enqueue(values, labels)
        self.steps += 1


class CrossBatchMemory(_MemoryWrapper):
    """``CrossBatchMemory(loss, embedding_dim, memory_size)(embeddings [B, D], labels [B])``."""

    def __init__(
        self, loss: PairLoss, embedding_dim: int, memory_size: int, warmup_steps: int = 0
    ) -> None:
        if not getattr(loss, "accepts_references", False):
            raise ValueError(f"{type(loss).__name__} takes no references: it cannot use a memory")
        super().__init__(("embeddings",), embedding_dim, memory_size, warmup_steps)
        self.loss = loss
        self.default_inputs = dict(loss.default_inputs)

    def memory(self) -> tuple[Tensor, Tensor]:
        """The stored ``[M', D]`` embeddings and ``[M']`` labels, oldest first."""
        (embeddings,), labels = self.queue.contents()
        return embeddings, labels

    def enqueue(self, embeddings: Tensor, labels: Tensor) -> None:
        """Store a batch (detached) at the ring position."""
        self.queue.enqueue([embeddings], labels)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if self._memory_in_use():
            value = self.loss(embeddings, labels, *self.memory())
        else:
            value = self.loss(embeddings, labels)
        self._store([embeddings], labels)
        return value


class CrossModalMemory(_MemoryWrapper):
    """``CrossModalMemory(VSELoss(), dim, memory_size)(img [B, D], txt [B, D], img_ids [B])``.

    ``img_ids`` identify images across steps (dataset indices), so that a stored
    caption of the same image is never a negative.
    """

    def __init__(
        self, loss: nn.Module, embedding_dim: int, memory_size: int, warmup_steps: int = 0
    ) -> None:
        if not getattr(loss, "accepts_references", False):
            raise ValueError(f"{type(loss).__name__} takes no references: it cannot use a memory")
        super().__init__(("images", "captions"), embedding_dim, memory_size, warmup_steps)
        self.loss = loss
        self.default_inputs = dict(loss.default_inputs)

    def memory(self) -> tuple[Tensor, Tensor, Tensor]:
        """Stored ``images [M', D]``, ``captions [M', D]`` and ``img_ids [M']``, oldest first."""
        (images, captions), ids = self.queue.contents()
        return images, captions, ids

    def forward(self, img: Tensor, txt: Tensor, img_ids: Tensor) -> Tensor:
        if self._memory_in_use():
            value = self.loss(img, txt, img_ids, *self.memory())
        else:
            value = self.loss(img, txt, img_ids)
        self._store([img, txt], img_ids)
        return value
