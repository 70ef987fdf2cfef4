"""Batch samplers (use as ``DataLoader(batch_sampler=...)``), seeded and resumable.

Every sampler's batches for an epoch are a pure function of ``(seed, epoch)``:
call ``set_epoch(e)`` before iterating; ``start_batch = n`` (attribute or
constructor argument) skips the first ``n`` batches of this rank, so a resumed
run continues the same epoch exactly. With ``world_size > 1`` rank ``r`` takes
batches ``r, r + W, ...`` of the same global order, cut to an equal count on
every rank (so all ranks take the same number of steps): ranks get disjoint
batches. ``len(sampler)`` is exactly the number of batches ``iter`` yields:
``len(global batches) // world_size - start_batch`` (at least 0). The epoch's
batches are built once per epoch and kept.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from retrievalkit.errors import InputError


class _EpochBatches:
    """Shared epoch/rank/resume logic; subclasses implement ``_global_batches``."""

    def __init__(self, seed: int, rank: int, world_size: int, start_batch: int = 0) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.start_batch = start_batch
        self._built: tuple[int, list[list[int]]] | None = None  # (epoch, this rank's batches)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def _global_batches(self) -> list[list[int]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def batches(self) -> list[list[int]]:
        """This rank's batches of the current epoch (before ``start_batch``)."""
        if self._built is None or self._built[0] != self.epoch:
            all_batches = self._global_batches()
            per_rank = len(all_batches) // self.world_size
            self._built = (self.epoch, all_batches[self.rank :: self.world_size][:per_rank])
        return self._built[1]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()[self.start_batch :]

    def __len__(self) -> int:
        return max(len(self.batches()) - self.start_batch, 0)


def _fill_batches(
    items: Sequence[int], group_of: Sequence[int], batch_size: int
) -> list[list[int]]:
    """Cut ``items`` into batches with at most one item per group, in order.

    An item whose group is already in the batch being filled is put back, ahead of
    the rest, for the next batch. Batches smaller than 2 are dropped.
    """
    batches: list[list[int]] = []
    pending = deque(items)
    while pending:
        current: list[int] = []
        groups: set[int] = set()
        put_back: list[int] = []
        while pending and len(current) < batch_size:
            item = pending.popleft()
            if group_of[item] in groups:
                put_back.append(item)
            else:
                current.append(item)
                groups.add(group_of[item])
        pending.extendleft(reversed(put_back))
        if len(current) >= 2:
            batches.append(current)
    return batches


class CrossModalBatchSampler(_EpochBatches):
    """Batches of caption indices (``caption_image [M]`` maps caption -> image).

    Epoch: the M captions are shuffled (seed, epoch) and cut in order into
    batches of ``batch_size``. With ``allow_same_image=False`` (default) no batch
    holds two captions of one image (they are positives, not negatives): a
    caption whose image is already in the batch being filled waits, ahead of the
    rest, for the next batch. Each caption is in at most one batch per epoch; the
    only ones left out are a last batch of fewer than 2 captions (and, with
    ``allow_same_image=False``, captions of one image that remain when nothing
    else is left). The last batch may be smaller than ``batch_size`` (>= 2).
    """

    def __init__(
        self,
        caption_image: Sequence[int] | np.ndarray,
        batch_size: int,
        seed: int = 0,
        allow_same_image: bool = False,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        super().__init__(seed, rank, world_size, start_batch)
        if batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {batch_size}")
        self.caption_image = np.asarray(caption_image, dtype=np.int64)
        self.batch_size = batch_size
        self.allow_same_image = allow_same_image

    def _global_batches(self) -> list[list[int]]:
        order = torch.randperm(len(self.caption_image), generator=self._generator()).tolist()
        if self.allow_same_image:
            cut = range(0, len(order) - 1, self.batch_size)
            return [b for b in (order[i : i + self.batch_size] for i in cut) if len(b) >= 2]
        return _fill_batches(order, self.caption_image.tolist(), self.batch_size)


class PKBatchSampler(_EpochBatches):
    """P classes x K samples per batch (metric learning); an epoch sees each sample once.

    Batch composition (exact): every batch has P*K indices, K from each of P
    distinct classes; ``batch[j*K:(j+1)*K]`` is one class.
    Epoch: each class with at least 2 samples is shuffled and cut into groups
    of K; a short last group is topped up with samples of the same class drawn
    again at random (so a class with fewer than K samples appears with repeats).
    Classes with one sample are left out (no positive pair). The groups of all
    classes are shuffled and packed P at a time in that order, a group whose class
    is already in the batch waiting for the next one. Groups that cannot complete a
    batch at the end (fewer than P distinct classes left) are dropped. So every
    sample of a usable class is in at most one group per epoch, and in exactly one
    unless its group is dropped (a few groups at most when no class holds much more
    than 1/P of all groups; ``dropped_groups()`` counts them).
    ``len()`` is the exact number of batches of this epoch on this rank: at most
    ``floor(sum_c ceil(n_c / K) / P) // world_size``; it can differ by epoch.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        classes_per_batch: int,
        samples_per_class: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        super().__init__(seed, rank, world_size, start_batch)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.p, self.k = classes_per_batch, samples_per_class
        self.by_class = {int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}
        usable = [c for c, idx in self.by_class.items() if len(idx) >= 2]
        if self.p < 2 or self.k < 2:
            raise ValueError(f"need P >= 2 and K >= 2, got P={self.p}, K={self.k}")
        if len(usable) < self.p:
            raise InputError(
                f"P x K sampling needs P = {self.p} classes with at least 2 samples per "
                f"batch (data.batch_size / data.samples_per_class), but the training split "
                f"has {len(usable)}; lower data.batch_size to at most "
                f"{len(usable)} x samples_per_class"
            )
        self.usable = usable

    def _global_batches(self) -> list[list[int]]:
        gen = self._generator()
        groups: list[list[int]] = []
        group_class: list[int] = []
        for cls in self.usable:
            idx = self.by_class[cls]
            perm = idx[torch.randperm(len(idx), generator=gen).numpy()].tolist()
            for start in range(0, len(perm), self.k):
                group = perm[start : start + self.k]
                if len(group) < self.k:
                    extra = torch.randint(len(idx), (self.k - len(group),), generator=gen)
                    group = group + idx[extra.numpy()].tolist()
                groups.append(group)
                group_class.append(cls)
        order = torch.randperm(len(groups), generator=gen).tolist()
        packed = _fill_batches(order, group_class, self.p)
        full = [batch for batch in packed if len(batch) == self.p]
        self._num_groups = (len(groups), len(full) * self.p)
        return [[i for g in batch for i in groups[g]] for batch in full]

    def dropped_groups(self) -> int:
        """Groups of K left out of this epoch's batches (all ranks together)."""
        self.batches()
        total, used = self._num_groups
        return total - used


class RandomBatchSampler(_EpochBatches):
    """Plain shuffled batches of ``range(n)``; the last partial batch is dropped."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        super().__init__(seed, rank, world_size, start_batch)
        self.n, self.batch_size = n, batch_size

    def _global_batches(self) -> list[list[int]]:
        order = torch.randperm(self.n, generator=self._generator()).tolist()
        full = len(order) // self.batch_size * self.batch_size
        return [order[i : i + self.batch_size] for i in range(0, full, self.batch_size)]


class RankShareSampler:
    """This rank's share of every global batch of ``sampler`` (data-parallel training).

    The recipe's batch size is global: rank ``r`` of ``W`` takes rows
    ``[r b / W, (r + 1) b / W)`` of each global batch of ``b`` indices, so the W
    ranks together train on exactly the batches one process would. A global batch
    whose size is not a multiple of W (a short last batch) is skipped by every
    rank, as the gather across ranks needs equal shares. ``start_batch`` counts
    this rank's batches (steps), as for the samplers above; ``set_epoch`` is
    passed on. The wrapped sampler must not skip batches itself (its
    ``start_batch`` stays 0).
    """

    def __init__(self, sampler: _EpochBatches, rank: int, world_size: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.sampler, self.rank, self.world_size = sampler, rank, world_size
        self.start_batch = 0

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def batches(self) -> list[list[int]]:
        """This rank's share of each usable global batch of the current epoch."""
        shares = []
        for batch in self.sampler.batches():
            if len(batch) % self.world_size == 0:
                size = len(batch) // self.world_size
                shares.append(batch[self.rank * size : (self.rank + 1) * size])
        return shares

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()[self.start_batch :]

    def __len__(self) -> int:
        return max(len(self.batches()) - self.start_batch, 0)
