"""Batch samplers: exact composition, epoch coverage, determinism, ranks, resume."""

from collections import Counter

import numpy as np
import pytest

from retrievalkit.data import CrossModalBatchSampler, PKBatchSampler, RandomBatchSampler


def caption_images(n_images=40, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 7, n_images)  # 1..6 captions per image
    return np.repeat(np.arange(n_images), counts)


def test_cross_modal_batches_never_repeat_an_image_and_cover_the_epoch():
    t2i = caption_images()
    sampler = CrossModalBatchSampler(t2i, batch_size=16, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        assert len(set(t2i[batch])) == len(batch) <= 16
    seen = Counter(i for b in batches for i in b)
    assert max(seen.values()) == 1
    assert len(seen) >= len(t2i) - 16  # only a last small remainder can be left over


def test_allow_same_image_is_plain_shuffling():
    t2i = np.zeros(10, dtype=int)  # all captions of one image
    sampler = CrossModalBatchSampler(t2i, batch_size=4, seed=0, allow_same_image=True)
    assert [len(b) for b in sampler] == [4, 4, 2]  # a last batch of >= 2 is kept
    strict = CrossModalBatchSampler(t2i, batch_size=4, seed=0)
    assert list(strict) == []  # no batch can have two distinct images


def test_epochs_differ_and_are_deterministic():
    t2i = caption_images()
    a, b = CrossModalBatchSampler(t2i, 8, seed=1), CrossModalBatchSampler(t2i, 8, seed=1)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)


def test_start_batch_resumes_the_same_epoch():
    t2i = caption_images()
    sampler = CrossModalBatchSampler(t2i, 8, seed=5)
    sampler.set_epoch(1)
    full = list(sampler)
    sampler.start_batch = 3
    assert list(sampler) == full[3:] and len(sampler) == len(full) - 3


def test_ranks_get_disjoint_equal_shares():
    t2i = caption_images()
    shares = []
    for rank in range(3):
        sampler = CrossModalBatchSampler(t2i, 8, seed=2, rank=rank, world_size=3)
        shares.append([i for b in sampler for i in b])
    assert len({len(s) // 8 for s in shares}) <= 2
    assert not set(shares[0]) & set(shares[1]) and not set(shares[1]) & set(shares[2])


def test_pk_batches_are_exactly_p_classes_times_k():
    labels = np.repeat(np.arange(7), [10, 9, 4, 12, 2, 1, 8])  # uneven; class 5 has one sample
    sampler = PKBatchSampler(labels, classes_per_batch=3, samples_per_class=4, seed=0)
    batches = list(sampler)
    assert batches
    for batch in batches:
        assert len(batch) == 12
        counts = Counter(labels[batch])
        assert len(counts) == 3 and set(counts.values()) == {4}
        assert 5 not in counts  # a single-sample class is left out
    covered = {i for b in batches for i in b}
    assert len(covered) >= 0.6 * len(labels)


def test_pk_needs_enough_classes():
    with pytest.raises(ValueError, match="needs P = 4 classes.*has 3; lower data.batch_size"):
        PKBatchSampler(np.repeat([0, 1, 2], 5), classes_per_batch=4, samples_per_class=2)


def test_random_batch_sampler_drops_last_partial_batch():
    sampler = RandomBatchSampler(10, 4, seed=0)
    batches = list(sampler)
    assert [len(b) for b in batches] == [4, 4]
    assert len(set(i for b in batches for i in b)) == 8


def test_pk_batches_are_blocks_of_k_and_cover_a_balanced_epoch_once():
    labels = np.repeat(np.arange(12), 8)
    np.random.default_rng(0).shuffle(labels)
    for seed in range(5):
        sampler = PKBatchSampler(labels, classes_per_batch=3, samples_per_class=4, seed=seed)
        batches = list(sampler)
        assert len(batches) == len(sampler) <= 24 // 3
        for batch in batches:
            blocks = [set(labels[batch[j * 4 : (j + 1) * 4]].tolist()) for j in range(3)]
            assert all(len(b) == 1 for b in blocks) and len(set().union(*blocks)) == 3
        seen = Counter(i for b in batches for i in b)
        assert max(seen.values()) == 1  # no top-ups: 8 is a multiple of K
        assert len(seen) == 4 * 3 * len(batches) == 96 - 4 * sampler.dropped_groups()


def test_pk_small_classes_are_topped_up_with_their_own_samples():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 3])  # class 3 has one sample: left out
    sampler = PKBatchSampler(labels, classes_per_batch=2, samples_per_class=4, seed=1)
    for batch in sampler:
        for j in range(2):
            block = batch[j * 4 : (j + 1) * 4]
            assert len(set(labels[block].tolist())) == 1
            assert set(block) == set(np.flatnonzero(labels == labels[block[0]]).tolist())


def test_pk_is_deterministic_per_seed_and_epoch_and_disjoint_across_ranks():
    labels = np.repeat(np.arange(20), 6)
    a, b = PKBatchSampler(labels, 4, 3, seed=7), PKBatchSampler(labels, 4, 3, seed=7)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b)
    b.set_epoch(2)
    assert list(a) != list(b)
    assert list(PKBatchSampler(labels, 4, 3, seed=8)) != list(PKBatchSampler(labels, 4, 3, seed=7))
    ranks = [PKBatchSampler(labels, 4, 3, seed=7, rank=r, world_size=2) for r in range(2)]
    flat = [sorted(i for batch in s for i in batch) for s in ranks]
    assert len(ranks[0]) == len(ranks[1]) > 0
    assert not set(flat[0]) & set(flat[1])
    whole = PKBatchSampler(labels, 4, 3, seed=7).batches()
    assert list(ranks[0]) == whole[0::2][: len(ranks[0])]


def test_start_batch_argument_resumes_every_sampler():
    labels = np.repeat(np.arange(10), 4)
    for make in (
        lambda **kw: PKBatchSampler(labels, 2, 2, seed=3, **kw),
        lambda **kw: RandomBatchSampler(40, 6, seed=3, **kw),
        lambda **kw: CrossModalBatchSampler(labels, 6, seed=3, **kw),
    ):
        full, resumed = make(), make(start_batch=2)
        full.set_epoch(4)
        resumed.set_epoch(4)
        assert list(resumed) == list(full)[2:] and len(resumed) == len(full) - 2
    with pytest.raises(ValueError, match="start_batch"):
        RandomBatchSampler(40, 6, start_batch=-1)


def test_rank_shares_cut_every_global_batch_and_skip_uneven_ones():
    from retrievalkit.data import RankShareSampler

    # 17 captions of distinct images, batch 4: 4 full batches (a last one of 1 is dropped)
    global_batches = CrossModalBatchSampler(list(range(17)), batch_size=4, seed=3).batches()
    shares = [
        RankShareSampler(CrossModalBatchSampler(list(range(17)), 4, seed=3), r, 2) for r in (0, 1)
    ]
    for sampler in shares:
        sampler.set_epoch(0)
    for batch, a, b in zip(global_batches, *[s.batches() for s in shares], strict=True):
        assert a + b == batch and len(a) == len(b) == 2  # rank 0 the first half, rank 1 the rest
    # a global batch of odd size is skipped by both ranks (equal shares for the gather)
    uneven = CrossModalBatchSampler(list(range(11)), batch_size=4, seed=0)
    assert [len(b) for b in uneven.batches()] == [4, 4, 3]
    share = RankShareSampler(uneven, 1, 2)
    assert share.batches() == [b[2:] for b in uneven.batches()[:2]]
    share.start_batch = 1
    assert list(share) == share.batches()[1:] and len(share) == 1
    with pytest.raises(ValueError, match="rank 2 outside world size 2"):
        RankShareSampler(uneven, 2, 2)
