"""The Python API as sentence-transformers / open_clip users type it: one string is
one query, every kind of image is an image, the encode keywords, similarity and
semantic_search over any embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import retrievalkit as rk
from retrievalkit.cli import main
from retrievalkit.errors import InputError


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_cross_modal, write_recipe):
    tmp = tmp_path_factory.mktemp("api")
    recipe = write_recipe(tmp / "tiny.yaml", tiny_cross_modal())
    assert main(["train", str(recipe), "--out", str(tmp / "run"), "--device", "cpu"]) == 0
    assert main(["index", "build", str(tmp / "run"), "--out", str(tmp / "index")]) == 0
    return tmp


def keys(hits):
    return [(h.key, round(h.score, 5)) for h in hits]


def test_a_string_is_one_query(run):
    engine = rk.SearchEngine(run / "index")
    hits = engine.search_text("heart", 3)
    assert len(hits) == 3 and all(isinstance(h, rk.search.SearchHit) for h in hits)
    assert keys(hits) == keys(engine.search_text(["heart"], 3)[0])
    assert len(engine.search_text("red heart")) == 10  # a space is not an empty query
    both = engine.search_text(["red heart", "blue bar"], 2)
    assert [len(h) for h in both] == [2, 2]
    with pytest.raises(InputError, match="query 1: empty"):
        engine.search_text(["red", "  "])


def test_every_kind_of_image_is_an_image(run, tmp_path):
    engine = rk.SearchEngine(run / "index")
    picture = Image.new("RGB", (24, 24), (200, 30, 30))
    picture.save(tmp_path / "red.png")
    want = keys(engine.search_image(tmp_path / "red.png", 4))
    assert len(want) == 4
    pixels = np.asarray(picture)
    for image in (str(tmp_path / "red.png"), picture, pixels, pixels / 255.0):
        assert keys(engine.search_image(image, 4)) == want
    batch = engine.search_image([picture, pixels, tmp_path / "red.png"], 4)
    assert [keys(h) for h in batch] == [want] * 3
    assert [keys(h) for h in engine.search_image(pixels[None], 4)] == [want]  # [N, H, W, 3]
    captions = engine.search_image(picture, 2, target="captions")
    assert len(captions) == 2 and captions[0].caption
    with pytest.raises(InputError, match="no such image file"):
        engine.search_image(tmp_path / "missing.png")


def test_encode_takes_sentence_transformers_keywords(run):
    model = rk.load(run / "run")  # device="auto": cpu here
    assert model.device == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    texts = ["a red circle", "a blue bar", "a green square"]
    rows = model.encode_text(texts)
    assert isinstance(rows, np.ndarray) and rows.shape == (3, 8) and rows.dtype == np.float32
    assert np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    assert np.allclose(model.encode_text(texts, batch_size=1), rows, atol=1e-6)
    assert np.allclose(model.encode_text(texts[0]), rows[0], atol=1e-6)  # one string: [E]
    tensor = model.encode_text(texts, convert_to_tensor=True, show_progress_bar=False)
    assert isinstance(tensor, torch.Tensor) and tensor.device == model.device
    cpu = model.encode_text(texts, convert_to_numpy=False)
    assert isinstance(cpu, torch.Tensor) and cpu.device.type == "cpu"
    raw = model.encode_text(texts, normalize_embeddings=False)  # the tower's rows
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-3)
    assert np.allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), rows, atol=1e-5)
    images = model.encode_image([Image.new("RGB", (16, 16), c) for c in ("red", "blue")])
    assert images.shape == (2, 8)
    assert model.encode_images is not None and model.encode_image(
        Image.new("RGB", (16, 16), "red"), device="cpu"
    ).shape == (8,)
    with pytest.raises(InputError, match="batch_size must be >= 1"):
        model.encode_text(texts, batch_size=0)


def test_similarity_and_semantic_search_match_sentence_transformers():
    util = pytest.importorskip("sentence_transformers.util", reason="the text extra")
    generator = np.random.default_rng(0)
    queries = generator.normal(size=(7, 16)).astype(np.float32)
    corpus = generator.normal(size=(50, 16)).astype(np.float32)
    scores = rk.similarity(queries, corpus)
    assert isinstance(scores, np.ndarray) and scores.shape == (7, 50)
    expected = util.cos_sim(torch.from_numpy(queries), torch.from_numpy(corpus)).numpy()
    assert np.allclose(scores, expected, atol=1e-5)
    assert isinstance(rk.similarity(torch.from_numpy(queries), corpus), torch.Tensor)
    ours = rk.semantic_search(queries, corpus, top_k=5)
    theirs = util.semantic_search(torch.from_numpy(queries), torch.from_numpy(corpus), top_k=5)
    assert [[h["corpus_id"] for h in q] for q in ours] == [
        [h["corpus_id"] for h in q] for q in theirs
    ]
    assert np.allclose(
        [[h["score"] for h in q] for q in ours], [[h["score"] for h in q] for q in theirs]
    )
    assert len(rk.semantic_search(queries[0], corpus, top_k=100)) == 1  # one query, [E]
    assert len(rk.semantic_search(queries[0], corpus, top_k=100)[0]) == 50  # all rows
    with pytest.raises(InputError, match="16 dimensions, the corpus 8"):
        rk.semantic_search(queries, corpus[:, :8])


def test_rk_train_is_a_plain_function_after_the_training_package_is_imported():
    import inspect

    import retrievalkit as rk
    import retrievalkit.training.trainer
    from retrievalkit.api import train as api_train

    assert inspect.isfunction(rk.train)
    assert rk.train is api_train
