"""COCO 1K/5K folds and the named protocol records."""

import logging

import pytest
import torch
import torch.nn.functional as F

from retrievalkit.eval import PROTOCOLS, coco_1k_5k, cross_modal_recall, evaluate_protocol


def ragged(n_img, seed):
    """1..6 captions per image, in random order, so folds differ in caption count."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 7, (n_img,), generator=g)
    t2i = torch.arange(n_img).repeat_interleave(counts)
    t2i = t2i[torch.randperm(len(t2i), generator=g)]
    img = F.normalize(torch.randn(n_img, 8, generator=g, dtype=torch.float64), dim=1)
    txt = F.normalize(img[t2i] + torch.randn(len(t2i), 8, generator=g, dtype=torch.float64), dim=1)
    return img, txt, t2i


def test_coco_1k_is_the_mean_of_folds_not_the_best():
    img, txt, t2i = ragged(100, seed=9)  # 5 folds x 20 images
    result = coco_1k_5k(img, txt, t2i, chunk_size=16)
    manual = []
    for fold in range(5):
        keep = (t2i >= fold * 20) & (t2i < fold * 20 + 20)
        manual.append(
            cross_modal_recall(img[fold * 20 : fold * 20 + 20], txt[keep], t2i[keep] - fold * 20)
        )
    assert result["folds"] == manual
    for key in ("i2t_r1", "i2t_r10", "t2i_r5", "rsum", "t2i_medr", "i2t_meanr"):
        assert result["coco1k"][key] == pytest.approx(sum(m[key] for m in manual) / 5), key
    assert result["coco1k"]["rsum"] < max(m["rsum"] for m in manual)  # mean, not best
    assert result["coco5k"] == cross_modal_recall(img, txt, t2i)
    one_k = result["coco1k"]
    assert one_k["n_images"] == 20 and one_k["folds"] == 5
    assert one_k["n_captions_per_fold"] == [m["n_captions"] for m in manual]
    assert one_k["n_images_total"] == 100 and one_k["n_captions_total"] == len(t2i)
    assert one_k["n_captions"] == round(len(t2i) / 5)


def test_folds_follow_the_mapping_not_the_caption_order():
    img, txt, t2i = ragged(50, seed=2)
    order = torch.argsort(t2i)  # grouped by image vs. shuffled: same folds
    grouped, shuffled = coco_1k_5k(img, txt[order], t2i[order]), coco_1k_5k(img, txt, t2i)
    for key in ("coco5k", "coco1k"):
        for name, value in grouped[key].items():
            assert shuffled[key][name] == pytest.approx(value), (key, name)
    for fold_a, fold_b in zip(grouped["folds"], shuffled["folds"]):
        assert fold_a == pytest.approx(fold_b)


def test_fold_errors():
    img, txt, t2i = ragged(49, seed=1)
    with pytest.raises(ValueError, match="equal folds"):
        coco_1k_5k(img, txt, t2i)


def test_named_protocol_records(caplog):
    img, txt, t2i = ragged(50, seed=4)
    full = cross_modal_recall(img, txt, t2i)
    assert set(PROTOCOLS) == {"full", "coco1k", "coco5k", "f30k"}
    for name in ("full", "coco5k", "f30k"):
        record = evaluate_protocol(name, img, txt, t2i)
        assert record == {**full, "protocol": name}
    record = evaluate_protocol("coco1k", img, txt, t2i)
    expected = coco_1k_5k(img, txt, t2i)["coco1k"]
    assert record == {**expected, "protocol": "coco1k"}
    assert (record["n_images"], record["n_images_total"]) == (10, 50)
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate_protocol("coco2k", img, txt, t2i)


def test_non_standard_sizes_are_warned(caplog):
    img, txt, t2i = ragged(50, seed=4)
    with caplog.at_level(logging.WARNING, logger="retrievalkit.eval.protocols"):
        evaluate_protocol("full", img, txt, t2i)
        assert caplog.text == ""
        evaluate_protocol("f30k", img, txt, t2i)
    assert "f30k expects 1000 test images, got 50" in caplog.text
