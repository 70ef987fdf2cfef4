"""ExactIndex and blockwise_topk against a brute-force full sort.

Integer-valued vectors make every inner product exact in float32, so the
comparison is exact (no tolerance) and produces many ties (lower index first).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retrievalkit.index import ExactIndex, IndexError_, blockwise_topk, load_index


def brute_force(queries: torch.Tensor, database: torch.Tensor, k: int):
    """Full score matrix, stable sort: score descending, then index ascending."""
    scores = queries @ database.T
    order = torch.argsort(-scores, dim=1, stable=True)[:, :k]
    return scores.gather(1, order), order


def int_vectors(n: int, d: int, seed: int, high: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-high, high + 1, (n, d), generator=g).float()


@pytest.mark.parametrize("n", [1, 7, 53])
@pytest.mark.parametrize("block_size", [1, 2, 5, 16, 1000])
@pytest.mark.parametrize("query_block_size", [1, 3, 64])
def test_blockwise_topk_matches_brute_force_with_ties(
    n: int, block_size: int, query_block_size: int
) -> None:
    database, queries = int_vectors(n, 5, seed=n), int_vectors(11, 5, seed=100 + n, high=1)
    for k in (1, 4, n, n + 3):
        scores, indices = blockwise_topk(queries, database, k, block_size, query_block_size)
        want_scores, want_indices = brute_force(queries, database, min(k, n))
        assert scores.shape == indices.shape == (11, min(k, n))
        assert indices.dtype == torch.int64
        assert torch.equal(indices, want_indices)
        assert torch.equal(scores, want_scores)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_blockwise_topk_keeps_input_dtype(dtype: torch.dtype) -> None:
    # small integers: every inner product is exact in each of these dtypes
    database, queries = int_vectors(29, 4, seed=5), int_vectors(6, 4, seed=6, high=1)
    scores, indices = blockwise_topk(queries.to(dtype), database.to(dtype), 6, block_size=4)
    want_scores, want_indices = brute_force(queries, database, 6)
    assert scores.dtype == dtype
    assert torch.equal(indices, want_indices)
    assert torch.equal(scores.float(), want_scores)


def test_all_equal_scores_give_lowest_indices() -> None:
    database = torch.ones(40, 3)
    scores, indices = blockwise_topk(torch.ones(2, 3), database, 5, block_size=7)
    assert indices.tolist() == [[0, 1, 2, 3, 4]] * 2
    assert torch.equal(scores, torch.full((2, 5), 3.0))


def test_float_data_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    database = F.normalize(torch.randn(301, 17, generator=g), dim=1)
    queries = F.normalize(torch.randn(13, 17, generator=g), dim=1)
    scores, indices = blockwise_topk(queries, database, 10, block_size=37)
    want_scores, want_indices = brute_force(queries, database, 10)
    torch.testing.assert_close(scores, want_scores, atol=1e-6, rtol=0)
    assert torch.equal(indices, want_indices)


def make_index(n: int = 23, d: int = 6, seed: int = 0, **kwargs) -> ExactIndex:
    index = ExactIndex(d, **kwargs)
    vectors = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    index.add(vectors, [f"item{i}" for i in range(n)], [{"i": i, "tag": "é"} for i in range(n)])
    return index


def test_index_scores_are_cosine_and_hits_are_ranked() -> None:
    g = torch.Generator().manual_seed(1)
    vectors, queries = torch.randn(30, 8, generator=g) * 5, torch.randn(4, 8, generator=g)
    index = ExactIndex(8, block_size=4)
    index.add(vectors, [str(i) for i in range(30)])
    result = index.search(queries, 3)
    cosine = F.normalize(queries, dim=1) @ F.normalize(vectors, dim=1).T
    want_scores, want_indices = brute_force(
        F.normalize(queries, dim=1), F.normalize(vectors, dim=1), 3
    )
    assert torch.equal(result.indices, want_indices)
    torch.testing.assert_close(result.scores, want_scores, atol=1e-6, rtol=0)
    assert result.scores.dtype == torch.float32
    hits = result.hits(2)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert [h.key for h in hits] == result.keys(2) == [str(int(i)) for i in want_indices[2]]
    assert hits[0].score == pytest.approx(float(cosine[2].max()), abs=1e-6)


def test_raw_inner_product_and_numpy_input() -> None:
    index = ExactIndex(2, normalize=False)
    index.add(np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]]), ["a", "b", "c"])
    result = index.search(np.array([[1.0, 1.0]]), 5)
    assert result.keys(0) == ["b", "c", "a"]
    assert result.scores[0].tolist() == [3.0, 2.0, 1.0]


def test_k_larger_than_index_returns_all() -> None:
    index = make_index(n=5)
    result = index.search(torch.randn(3, 6), 50)
    assert result.indices.shape == (3, 5)
    assert sorted(result.indices[0].tolist()) == [0, 1, 2, 3, 4]


def test_bad_calls_raise_clear_errors() -> None:
    index = ExactIndex(4)
    with pytest.raises(IndexError_, match="empty"):
        index.search(torch.randn(1, 4), 1)
    with pytest.raises(IndexError_, match=r"embeddings must be \[n, 4\], got \(2, 3\)"):
        index.add(torch.randn(2, 3), ["a", "b"])
    with pytest.raises(IndexError_, match="2 vectors but 1 keys"):
        index.add(torch.randn(2, 4), ["a"])
    with pytest.raises(IndexError_, match="2 keys but 1 metadata"):
        index.add(torch.randn(2, 4), ["a", "b"], [{}])
    with pytest.raises(IndexError_, match="NaN"):
        index.add(torch.tensor([[0.0, float("nan"), 1.0, 1.0]]), ["a"])
    index.add(torch.randn(2, 4), ["a", "b"])
    for k in (0, -1, 1.5):
        with pytest.raises(IndexError_, match="k must be an integer >= 1"):
            index.search(torch.randn(1, 4), k)
    with pytest.raises(IndexError_, match=r"queries must be \[n, 4\], got \(1, 5\)"):
        index.search(torch.randn(1, 5), 1)
    with pytest.raises(IndexError_, match="dim must be a positive integer"):
        ExactIndex(0)


def test_add_does_not_alias_caller_tensor() -> None:
    vectors = torch.ones(2, 3)
    index = ExactIndex(3, normalize=False)
    index.add(vectors, ["a", "b"])
    vectors.zero_()
    assert index.search(torch.ones(1, 3), 1).scores.item() == 3.0


def test_save_load_round_trip_and_add_after_load(tmp_path: Path) -> None:
    index = make_index(n=23)
    index.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest == {
        "format": 1,
        "backend": "exact",
        "kind": "flat",
        "dim": 6,
        "count": 23,
        "dtype": "float32",
        "normalize": True,
    }
    assert np.load(tmp_path / "idx" / "vectors.npy").dtype == np.float32
    assert not list((tmp_path / "idx").glob("*.tmp*"))
    loaded = load_index(tmp_path / "idx")
    assert type(loaded) is ExactIndex
    assert loaded.keys == index.keys and loaded.metadata == index.metadata
    queries = torch.randn(5, 6, generator=torch.Generator().manual_seed(9))
    before, after = index.search(queries, 7), loaded.search(queries, 7)
    assert torch.equal(before.indices, after.indices)
    assert torch.equal(before.scores, after.scores)
    new = torch.randn(3, 6, generator=torch.Generator().manual_seed(4))
    loaded.add(new, ["x", "y", "z"], [None, {"n": 1}, None])
    assert len(loaded) == 26
    result = loaded.search(new, 1)
    assert result.indices[:, 0].tolist() == [23, 24, 25]
    assert result.hits(1)[0].metadata == {"n": 1}
    loaded.save(tmp_path / "idx")
    assert ExactIndex.load(tmp_path / "idx").keys[-3:] == ["x", "y", "z"]


def test_empty_index_round_trip(tmp_path: Path) -> None:
    ExactIndex(3).save(tmp_path)
    loaded = load_index(tmp_path)
    assert len(loaded) == 0
    loaded.add(torch.eye(3), ["a", "b", "c"])
    assert loaded.search(torch.eye(3)[1:2], 1).keys(0) == ["b"]


def test_unserializable_metadata_is_named(tmp_path: Path) -> None:
    index = ExactIndex(2)
    index.add(torch.ones(1, 2), ["a"], [{"bad": object()}])
    with pytest.raises(IndexError_, match="JSON-serializable"):
        index.save(tmp_path)


def corrupt(directory: Path, name: str, content: bytes | None) -> None:
    path = directory / name
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("manifest.json", None, r"manifest.json: missing"),
        ("manifest.json", b"{not json", r"manifest.json: not valid JSON"),
        ("manifest.json", b'{"format": 99}', r"manifest.json: format 99, expected 1"),
        ("manifest.json", b'{"format": 1, "dim": 6}', r"manifest.json: missing field\(s\) backend"),
        (
            "manifest.json",
            b'{"format": 1, "backend": "exact", "dim": 6, "count": -2}',
            r"manifest.json: count must be a non-negative integer",
        ),
        (
            "manifest.json",
            b'{"format": 1, "backend": "annoy", "dim": 6, "count": 4}',
            r"manifest.json: unknown backend 'annoy'",
        ),
        ("vectors.npy", None, r"vectors.npy: missing"),
        ("vectors.npy", b"\x93NUMPY garbage", r"vectors.npy: unreadable"),
        ("items.jsonl", None, r"items.jsonl: missing"),
        ("items.jsonl", b'{"key": "a"}\n', r"items.jsonl: 1 items, manifest says 4"),
        ("items.jsonl", b'{"key": "a"}\n{"nokey": 1}\n', r"items.jsonl:2: bad item line"),
    ],
)
def test_bad_directory_errors_name_the_file(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    make_index(n=4).save(tmp_path)
    corrupt(tmp_path, name, content)
    with pytest.raises(IndexError_, match=message):
        load_index(tmp_path)


def test_vector_shape_mismatch_is_named(tmp_path: Path) -> None:
    make_index(n=4).save(tmp_path)
    np.save(tmp_path / "vectors.npy", np.zeros((3, 6), dtype=np.float32))
    with pytest.raises(IndexError_, match=r"vectors.npy: shape \(3, 6\), manifest says \(4, 6\)"):
        ExactIndex.load(tmp_path)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(IndexError_, match="not an index directory"):
        load_index(tmp_path / "nowhere")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_search_runs_on_the_vectors_device() -> None:
    index = make_index().to("cuda")
    result = index.search(torch.randn(2, 6), 3)
    assert result.indices.device.type == "cuda"
    cpu = make_index().search(torch.randn(2, 6, generator=torch.Generator().manual_seed(3)), 3)
    assert cpu.indices.device.type == "cpu"
