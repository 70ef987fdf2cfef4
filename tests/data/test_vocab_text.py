"""Tokenizer, vocabulary (JSON) and position shift."""

import pytest
import torch

from retrievalkit.data import DataError, Vocabulary, position_shift, tokenize


def test_tokenize_lowercases_and_splits_punctuation():
    assert tokenize("A dog's Toy, running!") == ["a", "dog's", "toy", ",", "running", "!"]


def test_vocabulary_build_encode_decode_roundtrip(tmp_path):
    vocab = Vocabulary.build(["a red car", "a blue car", "red"], min_count=2)
    assert vocab.words[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert set(vocab.words[4:]) == {"a", "red", "car"}
    ids = vocab.encode("a blue car")
    assert ids[0] == vocab.start_id and ids[-1] == vocab.end_id
    assert vocab.unk_id in ids
    assert vocab.decode(ids) == "a <unk> car"
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").words == vocab.words


def test_encode_batch_pads_and_reports_lengths():
    vocab = Vocabulary.build(["one two three", "one"])
    ids, lengths = vocab.encode_batch(["one two three", "one", ""], add_start_end=False)
    assert ids.shape == (3, 3) and lengths.tolist() == [3, 1, 1]
    assert ids[1, 1:].tolist() == [0, 0] and ids[2, 0] == vocab.unk_id
    cut, cut_lengths = vocab.encode_batch(["one two three"], max_len=2)
    assert cut.shape == (1, 2) and cut_lengths.tolist() == [2]


def test_bad_vocabulary_file_is_named(tmp_path):
    path = tmp_path / "v.json"
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="v.json: not a vocabulary file"):
        Vocabulary.load(path)


def test_position_shift_pads_on_the_left():
    ids = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]])
    lengths = torch.tensor([3, 1])
    g = torch.Generator().manual_seed(0)
    out = position_shift(ids, lengths, 2, g)
    assert out.shape == (2, 6)
    for row, length in zip(out, lengths.tolist(), strict=True):
        tokens = row[row != 0].tolist()
        start = int((row != 0).nonzero()[0])
        assert start <= 2 and len(tokens) == length
    again = position_shift(ids, lengths, 2, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def naive_position_shift(ids, lengths, max_shift, generator):
    """The formula row by row: shift_b pads, the row's tokens, then pads."""
    shifts = torch.randint(0, max_shift + 1, (ids.shape[0],), generator=generator)
    out = torch.zeros(ids.shape[0], ids.shape[1] + max_shift, dtype=ids.dtype)
    for row in range(ids.shape[0]):
        start, length = int(shifts[row]), int(lengths[row])
        out[row, start : start + length] = ids[row, :length]
    return out


def test_position_shift_matches_the_row_by_row_formula():
    gen = torch.Generator().manual_seed(3)
    for batch, width, max_shift in [(7, 5, 3), (1, 1, 0), (4, 9, 6)]:
        lengths = torch.randint(1, width + 1, (batch,), generator=gen)
        ids = torch.randint(4, 50, (batch, width), generator=gen)
        ids[torch.arange(width)[None] >= lengths[:, None]] = 0
        fast = position_shift(ids, lengths, max_shift, torch.Generator().manual_seed(9))
        slow = naive_position_shift(ids, lengths, max_shift, torch.Generator().manual_seed(9))
        assert torch.equal(fast, slow)


def test_pad_to_length_and_pack_padded():
    from retrievalkit.data.text import pack_padded, pad_to_length

    vocab = Vocabulary.build(["a b c d", "a"])
    ids, lengths = vocab.encode_batch(["a b c d", "a"])
    fixed = pad_to_length(ids, 8)
    assert fixed.shape == (2, 8) and fixed[1, 3:].eq(0).all()
    assert torch.equal(pad_to_length(ids, 3), ids[:, :3])
    packed = pack_padded(torch.randn(2, ids.shape[1], 5), lengths)
    assert packed.batch_sizes.sum().item() == int(lengths.sum())


def test_tokenize_keeps_accented_words_whole():
    assert tokenize("Piñata, Bräutigam") == ["piñata", ",", "bräutigam"]
    vocab = Vocabulary.build(["piñata party"])
    assert vocab.decode(vocab.encode("Piñata!")) == "piñata <unk>"
