"""The offline MiniLM text encoder: frozen (no grad, eval mode, cache) and trainable."""

import os

import pytest
import torch

from retrievalkit.models import build_text_encoder

pytest.importorskip("sentence_transformers")
CAPTIONS = ["a dog runs", "a red car"]


@pytest.fixture(scope="module")
def frozen():
    """One frozen MiniLM for the module (loading it costs a few seconds)."""
    return build_text_encoder("minilm", max_seq_length=16, cache_size=3)


def test_frozen_minilm_has_no_gradients_and_stays_in_eval(frozen):
    assert frozen.out_dim == 384 and not frozen.trainable
    assert all(not p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert frozen.training and not frozen.model.training  # no dropout while frozen
    frozen.clear_cache()
    out = frozen(CAPTIONS)
    assert out.shape == (2, 384) and not out.requires_grad
    frozen.clear_cache()
    assert torch.equal(frozen(CAPTIONS), out)  # recomputed, not cached: same rows


def test_frozen_minilm_matches_the_model_pipeline(frozen):
    """Mean pooling (+ the model's Normalize) exactly as the model folder configures."""
    frozen.clear_cache()
    expected = frozen.model.encode(CAPTIONS, convert_to_tensor=True)
    assert torch.allclose(frozen(CAPTIONS), expected.cpu(), atol=1e-5)


def test_frozen_cache_is_an_lru_by_caption(frozen):
    frozen.clear_cache()
    first = frozen(["a", "b", "c"])
    assert frozen.cached == 3
    frozen(["a"])  # touch "a": "b" is now the oldest
    frozen(["d"])
    assert list(frozen._cache) == ["c", "a", "d"]
    # a batch larger than the cache still comes back whole and in order
    out = frozen(["e", "f", "g", "h", "a", "b"])
    assert out.shape == (6, 384) and frozen.cached == 3
    assert torch.allclose(out[5], first[1], atol=1e-6)
    frozen.warm_cache(["x", "y"])
    assert {"x", "y"} <= set(frozen._cache)


def test_trainable_minilm_gets_gradients_and_never_caches():
    encoder = build_text_encoder("minilm", trainable=True, max_seq_length=16)
    out = encoder(CAPTIONS)
    out.sum().backward()
    grads = [p.grad for n, p in encoder.named_parameters() if ".pooler." not in n]
    assert all(g is not None for g in grads)
    assert encoder.cached == 0
    encoder.set_trainable(False)
    assert all(not p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.model.training


def test_loader_restores_the_offline_variables(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    build_text_encoder("minilm", max_seq_length=8)
    assert "HF_HUB_OFFLINE" not in os.environ
    assert os.environ["TRANSFORMERS_OFFLINE"] == "0"


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no modules.json"):
        build_text_encoder("minilm", model_dir=str(tmp_path))


def test_warmed_captions_are_kept_on_disk_for_the_next_encoder(tmp_path, monkeypatch):
    monkeypatch.setenv("RETRIEVALKIT_CACHE", str(tmp_path))
    captions = ["a red car", "two dogs", "a cat"]
    first = build_text_encoder("minilm", max_seq_length=16)
    first.warm_cache(captions)
    expected = first(captions)
    assert list((tmp_path / "features").glob("minilm-*-len16/part-*.npz"))
    second = build_text_encoder("minilm", max_seq_length=16)

    def no_encoding(batch):
        raise AssertionError(f"encoded {batch} again")

    monkeypatch.setattr(second, "_encode", no_encoding)
    second.warm_cache(captions)
    torch.testing.assert_close(second(captions), expected, rtol=0, atol=0)
