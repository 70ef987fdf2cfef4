"""Search over an index with several images per key (an emoji in several art styles)."""

import numpy as np
import torch

from retrievalkit.data.splits import ArrayImageSource, grouped_captions_split
from retrievalkit.index import ExactIndex
from retrievalkit.pipeline.items import unique_images
from retrievalkit.search.ranking import best_by_key, one_hit_per_key


def styled_index() -> ExactIndex:
    """Keys a (2 styles), b, c; vectors chosen so the query [1, 0] ranks
    a/openmoji 0.9 > b 0.8 > a/noto 0.6 > c 0.0."""
    index = ExactIndex(2)
    vectors = torch.tensor([[0.6, 0.8], [0.8, 0.6], [0.9, 0.436], [0.0, 1.0]])
    index.add(
        vectors,
        ["a", "b", "a", "c"],
        [{"style": "noto"}, {"style": "noto"}, {"style": "openmoji"}, {"style": "noto"}],
    )
    return index


def test_one_hit_per_key_at_its_best_style():
    hits = one_hit_per_key(styled_index(), torch.tensor([[1.0, 0.0]]), k=3)[0]
    assert [(h.rank, h.key, h.metadata["style"]) for h in hits] == [
        (1, "a", "openmoji"),
        (2, "b", "noto"),
        (3, "c", "noto"),
    ]
    assert [round(h.score, 3) for h in hits] == [0.9, 0.8, 0.0]
    best, floor = best_by_key(styled_index(), torch.tensor([[1.0, 0.0]]), depth=2)[0]
    assert set(best) == {"a", "b"} and floor == best["b"][0]
    assert best["a"][1]["style"] == "openmoji" and best["b"][1]["style"] == "noto"


def test_index_items_are_distinct_key_and_style():
    pixels = np.zeros((3, 4, 4, 3), np.uint8)
    split = grouped_captions_split(
        "emoji/train",
        ArrayImageSource(pixels),
        ["a", "a", "b"],
        [["cap a"], ["cap a"], ["cap b"]],
        "test",
        ["noto", "twemoji", "noto"],
    )
    items, keys, metadata = unique_images([split, split])  # the same split twice: no repeats
    assert [index for _, index in items] == [0, 1, 2]
    assert keys == ["a", "a", "b"]
    assert [m["style"] for m in metadata] == ["noto", "twemoji", "noto"]
    assert metadata[1]["captions"] == ["cap a"]
