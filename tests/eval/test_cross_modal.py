"""Cross-modal recall: hand-worked examples, ties, a faithful copy of vsepp's loops,
chunking, caption order, input checks."""

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from retrievalkit.eval import cross_modal_recall, ranking, retrieval_ranks, summarize_ranks
from retrievalkit.eval.ranking import chunk_rows
from retrievalkit.eval.vsepp_reference import vsepp_i2t_t2i, vsepp_scores


def naive_ranks(img, txt, txt_to_img):
    """Any number of captions per image: full argsort per query, best own caption."""
    sims = (img @ txt.T).numpy()
    t2i = txt_to_img.numpy()
    i2t = [
        min(
            np.flatnonzero(np.argsort(-sims[i], kind="stable") == c)[0]
            for c in np.flatnonzero(t2i == i)
        )
        for i in range(len(img))
    ]
    t2i_ranks = [
        np.flatnonzero(np.argsort(-sims[:, m], kind="stable") == t2i[m])[0] for m in range(len(txt))
    ]
    return torch.tensor(i2t) + 1, torch.tensor(t2i_ranks) + 1


def random_set(n_img, caps_per, d, seed, noise=0.9, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n_img, d, generator=g, dtype=dtype), dim=1)
    txt_to_img = torch.arange(n_img).repeat_interleave(caps_per)
    txt = img[txt_to_img] + noise * torch.randn(len(txt_to_img), d, generator=g, dtype=dtype)
    return img, F.normalize(txt, dim=1), txt_to_img


def ragged_set(n_img, d, seed):
    """1..6 captions per image, captions in random order."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 7, (n_img,), generator=g)
    txt_to_img = torch.arange(n_img).repeat_interleave(counts)
    txt_to_img = txt_to_img[torch.randperm(len(txt_to_img), generator=g)]
    img = F.normalize(torch.randn(n_img, d, generator=g, dtype=torch.float64), dim=1)
    txt = img[txt_to_img] + torch.randn(len(txt_to_img), d, generator=g, dtype=torch.float64)
    return img, F.normalize(txt, dim=1), txt_to_img


def test_hand_worked_example():
    # 3 images, 2 captions each, 1-D "embeddings" so the scores are products.
    img = torch.tensor([[1.0], [0.5], [-1.0]])
    txt = torch.tensor([[0.9], [-0.2], [0.1], [0.8], [-0.7], [0.3]])
    txt_to_img = torch.tensor([0, 0, 1, 1, 2, 2])
    # image 0 (score = caption value): c0 .9, c3 .8, c5 .3, c2 .1, c1 -.2, c4 -.7
    #   own c0 is first -> rank 1
    # image 1 (0.5 x): same order; own c3 (2nd) and c2 (4th) -> rank 2
    # image 2 (-1 x): c4 .7, c1 .2, c2 -.1, c5 -.3, c3 -.8, c0 -.9; own c4 first -> rank 1
    # captions (scores against images 0, 1, 2):
    #   c0 .9:  (.9, .45, -.9)   own 0 -> 1      c1 -.2: (-.2, -.1, .2)  own 0 -> 3
    #   c2 .1:  (.1, .05, -.1)   own 1 -> 2      c3 .8:  (.8, .4, -.8)   own 1 -> 2
    #   c4 -.7: (-.7, -.35, .7)  own 2 -> 1      c5 .3:  (.3, .15, -.3)  own 2 -> 3
    i2t, t2i = retrieval_ranks(img, txt, txt_to_img)
    assert i2t.tolist() == [1, 2, 1]
    assert t2i.tolist() == [1, 3, 2, 2, 1, 3]
    r = cross_modal_recall(img, txt, txt_to_img)
    # i2t: ranks 1, 2, 1 -> R@1 2/3; 0-based median of (0, 1, 0) = 0 -> medr 1; mean 4/3
    assert r["i2t_r1"] == pytest.approx(200 / 3)
    assert r["i2t_r5"] == r["i2t_r10"] == 100.0
    assert r["i2t_medr"] == 1.0 and r["i2t_meanr"] == pytest.approx(4 / 3)
    # t2i: ranks 1 3 2 2 1 3 -> R@1 2/6; 0-based sorted 0 0 1 1 2 2: median 1 -> medr 2; mean 2
    assert r["t2i_r1"] == pytest.approx(200 / 6)
    assert r["t2i_r5"] == r["t2i_r10"] == 100.0
    assert r["t2i_medr"] == 2.0 and r["t2i_meanr"] == pytest.approx(2.0)
    assert r["rsum"] == pytest.approx(200 / 3 + 100 + 100 + 200 / 6 + 100 + 100)
    assert (r["n_images"], r["n_captions"]) == (3, 6)
    assert isinstance(r["n_images"], int) and isinstance(r["n_captions"], int)
    with_k2 = cross_modal_recall(img, txt, txt_to_img, ks=(1, 2))
    # i2t ranks <= 2: all 3; t2i ranks <= 2: 4 of 6
    assert with_k2["i2t_r2"] == 100.0 and with_k2["t2i_r2"] == pytest.approx(400 / 6)
    assert with_k2["rsum"] == pytest.approx(200 / 3 + 100 + 200 / 6 + 400 / 6)


def test_median_rank_follows_vsepp_on_even_counts():
    # vsepp: floor(median(0-based ranks)) + 1
    assert summarize_ranks(torch.tensor([1, 2]), "x")["x_medr"] == 1.0  # median 0.5
    assert summarize_ranks(torch.tensor([1, 2, 3, 4]), "x")["x_medr"] == 2.0  # 1.5
    assert summarize_ranks(torch.tensor([5, 1, 9]), "x")["x_medr"] == 5.0
    assert summarize_ranks(torch.tensor([5, 1, 9]), "x")["x_meanr"] == 5.0


def test_ties_count_in_the_query_favour():
    # images 0 and 2 are equal; captions 0, 1 and 3 are equal
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    txt = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    txt_to_img = torch.tensor([0, 1, 1, 2])
    # image 0: c0 1 (own), c1 1, c2 0, c3 1 -> c1 and c3 tie with the own caption -> rank 1
    # image 1: own c2 scores 1, the rest 0 -> 1;  image 2: like image 0 with own c3 -> 1
    # caption 0: own image 0 scores 1, image 2 ties -> 1
    # caption 1: own image 1 scores 0, images 0 and 2 score 1 (strictly higher) -> 3
    # caption 2: own image 1 scores 1, the rest 0 -> 1;  caption 3: like caption 0 -> 1
    i2t, t2i = retrieval_ranks(img, txt, txt_to_img)
    assert i2t.tolist() == [1, 1, 1]
    assert t2i.tolist() == [1, 3, 1, 1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk", [1, 17, 250, 4096])
@pytest.mark.parametrize("threads", [1, 2])
def test_duplicated_embeddings_tie_across_chunks(dtype, chunk, threads, monkeypatch):
    # images duplicated in the other half (other chunks) and duplicated captions of
    # different images: a copy of the right answer never counts against a query.
    # One thread: comparison passes in row blocks (8 rows here); more: whole chunks.
    monkeypatch.setattr(ranking, "BLOCK_BYTES", 1)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    assert ranking.pass_rows(250, 903, torch.zeros(1)) == (8 if threads == 1 else 250)
    n, d = 301, 64
    img, txt, txt_to_img = random_set(n, 3, d, seed=chunk, noise=0.5, dtype=dtype)
    img[n // 2 :] = img[: n - n // 2].clone()
    pairs = len(txt[3::6])
    txt[1 : 6 * pairs : 6] = txt[3::6].clone()  # caption 6j+1 (image 2j) == 6j+3 (image 2j+1)
    s = img.double() @ txt.double().T
    own = s[txt_to_img, torch.arange(len(txt_to_img))]
    # reference with an explicit tolerance: equal vectors give exactly equal scores here
    expected_t2i = 1 + (s > own + 1e-9).sum(0)
    best = torch.full((n,), -2.0, dtype=torch.float64).scatter_reduce(0, txt_to_img, own, "amax")
    expected_i2t = 1 + (s > best[:, None] + 1e-9).sum(1)
    i2t, t2i = retrieval_ranks(img, txt, txt_to_img, chunk_size=chunk)
    assert torch.equal(t2i, expected_t2i) and torch.equal(i2t, expected_i2t)


def test_collapsed_embeddings_are_all_ties_and_warned(caplog):
    img = torch.ones(40, 8) / 8**0.5
    txt_to_img = torch.arange(40).repeat_interleave(2)
    with caplog.at_level(logging.WARNING, logger="retrievalkit.eval.ranking"):
        r = cross_modal_recall(img, img[txt_to_img], txt_to_img, chunk_size=16)
    assert r["rsum"] == 600.0
    assert "identical" in caplog.text


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_faithful_vsepp_loops(seed):
    img, txt, t2i = random_set(41, 5, 12, seed=seed)
    ranks_i, ranks_t = vsepp_i2t_t2i(img[t2i].numpy(), txt.numpy())
    ours_i, ours_t = retrieval_ranks(img, txt, t2i, chunk_size=16)
    assert ours_i.tolist() == (ranks_i + 1).astype(int).tolist()
    assert ours_t.tolist() == (ranks_t + 1).astype(int).tolist()
    r = cross_modal_recall(img, txt, t2i, chunk_size=16)
    ref = vsepp_scores(ranks_i, "i2t") | vsepp_scores(ranks_t, "t2i")
    assert {key: r[key] for key in ref} == pytest.approx(ref)
    # same data, captions shuffled (vsepp itself would need them grouped by 5)
    perm = torch.randperm(len(t2i), generator=torch.Generator().manual_seed(seed))
    shuffled = cross_modal_recall(img, txt[perm], t2i[perm], chunk_size=16)
    assert shuffled == pytest.approx(r)


def test_grouped_by_five_is_data_not_a_constant():
    # CLIP_benchmark#7: interleaved captions must give the same scores as grouped ones
    img, txt, t2i = random_set(30, 5, 8, seed=3)
    interleave = torch.arange(len(t2i)).view(30, 5).T.reshape(-1)  # c0 of every image, c1 ...
    grouped = cross_modal_recall(img, txt, t2i)
    assert cross_modal_recall(img, txt[interleave], t2i[interleave]) == pytest.approx(grouped)
    # while wrongly assuming "caption m belongs to image m // 5" changes the result
    wrong = cross_modal_recall(img, txt[interleave], t2i)
    assert wrong["i2t_r5"] < grouped["i2t_r5"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ragged_captions_match_naive_argsort(seed):
    img, txt, t2i = ragged_set(35, 6, seed)
    ref_i, ref_t = naive_ranks(img, txt, t2i)
    ours_i, ours_t = retrieval_ranks(img, txt, t2i, chunk_size=16)
    assert torch.equal(ours_i, ref_i) and torch.equal(ours_t, ref_t)


@settings(max_examples=30, deadline=None)
@given(
    n_img=st.integers(1, 40),
    caps_per=st.integers(1, 4),
    chunk=st.sampled_from([1, 2, 16, 23, 64, 10_000]),
    seed=st.integers(0, 10_000),
)
def test_properties(n_img, caps_per, chunk, seed):
    img, txt, t2i = random_set(n_img, caps_per, 6, seed)
    ks = (1, 2, 3, 5, 10)
    full = cross_modal_recall(img, txt, t2i, ks=ks, chunk_size=10_000)
    g = torch.Generator().manual_seed(seed)
    # chunking, caption order and image order do not matter
    perm_txt = torch.randperm(len(t2i), generator=g)
    perm_img = torch.randperm(n_img, generator=g)
    new_index = torch.empty_like(perm_img)
    new_index[perm_img] = torch.arange(n_img)
    moved = cross_modal_recall(
        img[perm_img], txt[perm_txt], new_index[t2i[perm_txt]], ks=ks, chunk_size=chunk
    )
    assert moved == pytest.approx(full)
    for side in ("i2t", "t2i"):
        recalls = [full[f"{side}_r{k}"] for k in ks]
        assert recalls == sorted(recalls)  # monotone in K
        assert 1 <= full[f"{side}_medr"] <= full[f"{side}_meanr"] * 2
    # perfect embeddings (captions equal to their image, images orthogonal) score 100
    eye = torch.eye(n_img, 64, dtype=torch.float64)
    perfect = cross_modal_recall(eye, eye[t2i], t2i, chunk_size=chunk)
    assert perfect["rsum"] == 600.0 and perfect["i2t_meanr"] == perfect["t2i_meanr"] == 1.0


def test_half_precision_on_cpu_is_widened():
    img, txt, t2i = random_set(20, 2, 8, seed=5)
    half = cross_modal_recall(img.half(), txt.half(), t2i)
    assert half == pytest.approx(cross_modal_recall(img.half().float(), txt.half().float(), t2i))


def test_gradients_are_not_tracked():
    """Scoring embeddings that require grad builds no autograd graph: autograd saves no
    tensor for a backward pass (the hook sees every save) and the inputs get no grad."""
    img, txt, t2i = random_set(10, 2, 4, seed=1)
    img.requires_grad_(True)
    saved: list[torch.Size] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        (img @ txt.T).sum()  # control: a tracked matmul is seen by the hook
        assert saved, "the hook must see what autograd saves"
        saved.clear()
        scores = cross_modal_recall(img, txt, t2i)
    assert saved == []
    assert scores["n_images"] == 10 and img.grad is None
    assert all(not isinstance(v, torch.Tensor) or not v.requires_grad for v in scores.values())


@pytest.mark.parametrize(
    ("img", "txt", "t2i", "message"),
    [
        (torch.eye(3), torch.eye(3)[:2], torch.tensor([0, 1]), "images without any caption"),
        (torch.eye(3), torch.eye(3), torch.tensor([0, 1, 3]), "outside"),
        (torch.eye(3), torch.eye(3), torch.tensor([0, 1]), r"txt_to_img must be \[M\]"),
        (torch.eye(3), torch.eye(3)[:, :2], torch.tensor([0, 1, 2]), "expected img_emb"),
        (torch.eye(3), torch.eye(3), torch.tensor([0.0, 1.0, 2.0]), "integer"),
        (torch.eye(3) * torch.nan, torch.eye(3), torch.tensor([0, 1, 2]), "NaN"),
    ],
)
def test_input_errors(img, txt, t2i, message):
    with pytest.raises(ValueError, match=message):
        cross_modal_recall(img, txt, t2i)
    with pytest.raises(ValueError, match="ks must be"):
        cross_modal_recall(torch.eye(2), torch.eye(2), torch.tensor([0, 1]), ks=(0,))


def test_automatic_chunk_rows():
    assert chunk_rows(5000, 25000, None, 4) == 64 * 2**20 // (25000 * 4)  # 671 rows, 64 MiB
    assert chunk_rows(5000, 780_000, None, 4) == 256  # never fewer rows than this
    assert chunk_rows(100, 10, None, 8) == 100 and chunk_rows(100, 10, 7, 4) == 7
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_rows(10, 10, 0, 4)
