"""GRU (true-length state), residual TextCNN (position shift, fixed width,
generator state) and word-vector initialisation."""

import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from retrievalkit.models import build_text_encoder
from retrievalkit.models.word_vectors import load_word_vectors

LONG = "a cat sleeping on a very long sofa today"
TEXTCNN = {
    "word_dim": 8,
    "blocks": [1, 1],
    "widths": [8, 12],
    "strides": [1, 2],
    "max_len": 10,
    "max_shift": 3,
}


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gru_uses_the_state_at_the_true_length(vocab, bidirectional):
    torch.manual_seed(0)
    encoder = build_text_encoder(
        "gru", vocab=vocab, word_dim=8, hidden_dim=12, num_layers=2, bidirectional=bidirectional
    ).eval()
    alone = encoder(["two dogs"])
    batched = encoder([LONG, "two dogs"])
    assert torch.allclose(alone[0], batched[1], atol=1e-6)
    # the same state from the GRU run on the unpadded sequence alone
    ids, _ = vocab.encode_batch(["two dogs"])
    _, hidden = encoder.gru(encoder.embed(ids))
    expected = (hidden[-2] + hidden[-1]) / 2 if bidirectional else hidden[-1]
    assert torch.allclose(alone, expected, atol=1e-6)


def _textcnn(vocab, **options):
    return build_text_encoder("textcnn", vocab=vocab, **{**TEXTCNN, **options})


def test_textcnn_fixed_width_and_position_shift_only_in_training(vocab, captions):
    encoder = _textcnn(vocab, seed=3)
    eval_ids = encoder.eval().token_ids(captions)
    assert eval_ids.shape == (3, 10 + 3)
    assert torch.equal(eval_ids, encoder.token_ids(captions))  # no randomness in eval
    lengths = (eval_ids != 0).sum(dim=1)
    shifts = []
    encoder.train()
    for _ in range(4):
        train_ids = encoder.token_ids(captions)
        assert train_ids.shape == eval_ids.shape
        for row in range(3):
            shift = int((train_ids[row] != 0).nonzero()[0])
            assert 0 <= shift <= 3
            n = int(lengths[row])
            assert torch.equal(train_ids[row, shift : shift + n], eval_ids[row, :n])
            assert int((train_ids[row] != 0).sum()) == n
            shifts.append(shift)
    assert len(set(shifts)) > 1  # seed 3 draws different shifts (deterministic)


def test_textcnn_shifts_are_reproducible_from_the_seed(vocab, captions):
    def draws(seed):
        encoder = _textcnn(vocab, seed=seed).train()
        return torch.stack([encoder.token_ids(captions) for _ in range(3)])

    assert torch.equal(draws(5), draws(5))
    assert not torch.equal(draws(5), draws(6))


def test_textcnn_eval_output_does_not_depend_on_the_batch(vocab):
    encoder = _textcnn(vocab).eval()
    assert torch.allclose(encoder(["two dogs"])[0], encoder([LONG, "two dogs"])[1], atol=1e-6)


def test_textcnn_generator_state_survives_a_safetensors_round_trip(vocab, captions, tmp_path):
    encoder = _textcnn(vocab, seed=1).train()
    encoder.token_ids(captions)
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(tmp_path / "m.st"))
    expected = encoder.token_ids(captions)
    restored = _textcnn(vocab, seed=99).train()
    restored.load_state_dict(load_file(str(tmp_path / "m.st")))
    assert torch.equal(restored.token_ids(captions), expected)


def test_textcnn_rejects_inconsistent_stages(vocab):
    with pytest.raises(ValueError, match="one entry per stage"):
        _textcnn(vocab, blocks=[1, 1, 1])


@pytest.mark.parametrize("header", ["", "3 4\n"])
def test_word_vectors_from_a_text_file(vocab, tmp_path, caplog, header):
    path = tmp_path / "vectors.txt"
    path.write_text(header + "red 1 2 3 4\ncar 0 0 0 1 \nunseen 9 9 9 9\nred car 5 5 5 5\n")
    embedding = torch.nn.Embedding(len(vocab), 4, padding_idx=0)
    before = embedding.weight.detach().clone()
    with caplog.at_level(logging.INFO, logger="retrievalkit.models.word_vectors"):
        coverage = load_word_vectors(embedding, vocab.words, path)
    assert coverage == pytest.approx(2 / len(vocab))
    assert "2 of" in caplog.text and "coverage" in caplog.text
    assert embedding.weight[vocab.index["red"]].tolist() == [1, 2, 3, 4]
    assert embedding.weight[vocab.index["car"]].tolist() == [0, 0, 0, 1]
    others = [i for i in range(len(vocab)) if vocab.words[i] not in ("red", "car")]
    assert torch.equal(embedding.weight[others], before[others])  # random init kept


def test_word_vectors_reach_both_encoders(vocab, tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("dogs 1 2 3 4\n")
    for name, options in (("gru", {"hidden_dim": 6}), ("textcnn", {**TEXTCNN})):
        options["word_dim"] = 4
        encoder = build_text_encoder(name, vocab=vocab, word_vectors_path=str(path), **options)
        assert encoder.embed.weight[vocab.index["dogs"]].tolist() == [1, 2, 3, 4]


def test_word_vector_file_errors_name_the_file_and_line(vocab, tmp_path):
    embedding = torch.nn.Embedding(len(vocab), 4)
    (tmp_path / "small.txt").write_text("red 1 2\n")
    with pytest.raises(ValueError, match=r"small.txt:1: vectors of size 2, expected 4"):
        load_word_vectors(embedding, vocab.words, tmp_path / "small.txt")
    (tmp_path / "header.txt").write_text("10 300\nred 1 2 3 4\n")
    with pytest.raises(ValueError, match=r"header.txt:1: vectors of size 300, expected 4"):
        load_word_vectors(embedding, vocab.words, tmp_path / "header.txt")
    (tmp_path / "nan.txt").write_text("car 1 2 3 4\nred 1 x 3 4\n")
    with pytest.raises(ValueError, match=r"nan.txt:2: not a number"):
        load_word_vectors(embedding, vocab.words, tmp_path / "nan.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_word_vectors(embedding, vocab.words, tmp_path / "missing.txt")
