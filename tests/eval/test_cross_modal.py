"""Cross-modal recall: hand-worked example, a naive argsort copy of vsepp's loops,
chunking, caption order, COCO folds."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from retrievalkit.eval import coco_1k_5k, cross_modal_recall, evaluate_protocol


def vsepp_i2t_t2i(img, txt, txt_to_img):
    """vsepp evaluation.py i2t/t2i generalized to any captions-per-image (argsort)."""
    img, txt, txt_to_img = img.numpy(), txt.numpy(), txt_to_img.numpy()
    sims = img @ txt.T
    i2t = np.zeros(len(img))
    for i in range(len(img)):
        inds = np.argsort(sims[i])[::-1]
        own = np.flatnonzero(txt_to_img == i)
        i2t[i] = min(np.where(inds == c)[0][0] for c in own)
    t2i = np.zeros(len(txt))
    for m in range(len(txt)):
        inds = np.argsort(sims[:, m])[::-1]
        t2i[m] = np.where(inds == txt_to_img[m])[0][0]
    out = {}
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in (1, 5, 10):
            out[f"{name}_r{k}"] = 100.0 * np.mean(ranks < k)
        out[f"{name}_medr"] = np.floor(np.median(ranks)) + 1
        out[f"{name}_meanr"] = ranks.mean() + 1
    return out


def random_set(n_img, caps_per, d, seed):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n_img, d, generator=g, dtype=torch.float64), dim=1)
    txt_to_img = torch.arange(n_img).repeat_interleave(caps_per)
    txt = F.normalize(
        img[txt_to_img] + 0.9 * torch.randn(len(txt_to_img), d, generator=g, dtype=torch.float64),
        dim=1,
    )
    return img, txt, txt_to_img


def test_hand_worked_example():
    # 3 images, 2 captions each, 1-D "embeddings" so the scores are products.
    img = torch.tensor([[1.0], [0.5], [-1.0]])
    txt = torch.tensor([[0.9], [-0.2], [0.1], [0.8], [-0.7], [0.3]])
    txt_to_img = torch.tensor([0, 0, 1, 1, 2, 2])
    # image 0 (score = caption value): order 0.9(c0) 0.8(c3) 0.3 0.1 -0.2 -0.7 -> best own c0 at rank 1
    # image 1 (0.5 x): same order -> own captions c2 (rank 4), c3 (rank 2) -> rank 2
    # image 2 (-1 x): order -0.7(c4)... reversed: c4 .7, c1 .2, c2 -.1, c5 -.3 -> own c4 rank 1
    r = cross_modal_recall(img, txt, txt_to_img)
    assert r["i2t_r1"] == pytest.approx(200 / 3)
    assert r["i2t_r5"] == 100.0
    assert r["i2t_medr"] == 1.0 and r["i2t_meanr"] == pytest.approx(4 / 3)
    # captions: c0 .9 -> scores (.9,.45,-.9): own img0 rank 1; c1 -.2 -> (-.2,-.1,.2): img0 rank 3
    # c2 .1 -> (.1,.05,-.1): img1 rank 2; c3 .8 -> img1 rank 2; c4 -.7 -> (-.7,-.35,.7): img2 rank 1
    # c5 .3 -> (.3,.15,-.3): img2 rank 3
    assert r["t2i_r1"] == pytest.approx(200 / 6)
    assert r["t2i_r5"] == 100.0
    assert r["t2i_medr"] == 2.0 and r["t2i_meanr"] == pytest.approx(12 / 6)
    assert r["rsum"] == pytest.approx(200 / 3 + 100 + 100 + 200 / 6 + 100 + 100)
    assert (r["n_images"], r["n_captions"]) == (3, 6)


def test_ties_count_in_the_query_favour():
    img = torch.tensor([[1.0], [1.0]])
    txt = torch.tensor([[1.0], [1.0]])
    r = cross_modal_recall(img, txt, torch.tensor([0, 1]))
    assert r["i2t_r1"] == 100.0 and r["t2i_r1"] == 100.0


@pytest.mark.parametrize("caps_per", [1, 5])
def test_equals_vsepp_argsort_loops(caps_per):
    img, txt, t2i = random_set(37, caps_per, 8, seed=caps_per)
    ours = cross_modal_recall(img, txt, t2i, chunk_size=10)
    ref = vsepp_i2t_t2i(img, txt, t2i)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value), key


@settings(max_examples=25, deadline=None)
@given(
    n_img=st.integers(1, 20),
    caps_per=st.integers(1, 4),
    chunk=st.integers(1, 25),
    seed=st.integers(0, 10_000),
)
def test_chunking_and_caption_order_do_not_matter(n_img, caps_per, chunk, seed):
    img, txt, t2i = random_set(n_img, caps_per, 6, seed)
    full = cross_modal_recall(img, txt, t2i, chunk_size=10_000)
    perm = torch.randperm(len(t2i), generator=torch.Generator().manual_seed(seed))
    shuffled = cross_modal_recall(img, txt[perm], t2i[perm], chunk_size=chunk)
    for key in full:
        assert shuffled[key] == pytest.approx(full[key]), key
    assert full["i2t_r1"] <= full["i2t_r5"] <= full["i2t_r10"]
    assert full["t2i_r1"] <= full["t2i_r5"] <= full["t2i_r10"]


def test_perfect_embeddings_score_100():
    img = torch.eye(6, dtype=torch.float64)
    t2i = torch.tensor([0, 0, 1, 2, 3, 4, 5, 5])
    r = cross_modal_recall(img, img[t2i], t2i)
    assert r["rsum"] == 600.0 and r["i2t_medr"] == 1 and r["t2i_meanr"] == 1


def test_image_without_caption_is_an_error():
    with pytest.raises(ValueError, match="images without any caption"):
        cross_modal_recall(torch.eye(3), torch.eye(3)[:2], torch.tensor([0, 1]))


def test_coco_1k_is_the_mean_of_folds():
    img, txt, t2i = random_set(50, 5, 8, seed=9)
    result = coco_1k_5k(img, txt, t2i)
    manual = []
    for fold in range(5):
        keep = (t2i >= fold * 10) & (t2i < fold * 10 + 10)
        manual.append(
            cross_modal_recall(img[fold * 10 : fold * 10 + 10], txt[keep], t2i[keep] - fold * 10)
        )
    for key in ("i2t_r1", "t2i_r5", "rsum", "t2i_medr"):
        assert result["coco1k"][key] == pytest.approx(sum(m[key] for m in manual) / 5)
    assert result["coco5k"] == cross_modal_recall(img, txt, t2i)
    assert result["coco1k"]["n_images"] == 10
    record = evaluate_protocol("coco1k", img, txt, t2i)
    assert record["protocol"] == "coco1k" and record["rsum"] == pytest.approx(
        result["coco1k"]["rsum"]
    )
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate_protocol("coco2k", img, txt, t2i)
    with pytest.raises(ValueError, match="equal folds"):
        coco_1k_5k(img[:49], txt[t2i < 49], t2i[t2i < 49])
