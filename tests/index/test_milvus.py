"""MilvusIndex on embedded milvus-lite: exact top-k, build / reopen / add, upsert, errors."""

from pathlib import Path

import pytest
import torch

from retrievalkit.index import ExactIndex, IndexError_, MilvusIndex, load_index

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")


def data(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def keys(n: int, start: int = 0) -> list[str]:
    return [f"k{i}" for i in range(start, start + n)]


def test_top_k_equals_exact_and_reopen_and_add(tmp_path: Path) -> None:
    vectors, queries = data(300, 16, 0), data(9, 16, 1)
    metadata = [{"caption": f"item {i}"} for i in range(200)] + [None] * 100
    exact = ExactIndex(16)
    exact.add(vectors, keys(300), metadata)
    milvus = MilvusIndex(16, str(tmp_path / "idx" / "milvus.db"), "images")
    milvus.add(vectors[:200], keys(200), metadata[:200])
    milvus.add(vectors[200:], keys(100, 200))  # a second add continues the ids
    assert len(milvus) == 300
    want, got = exact.search(queries, 10), milvus.search(queries, 10)
    torch.testing.assert_close(got.scores, want.scores, rtol=0, atol=1e-5)
    for q in range(9):  # random floats: no ties, so the order is the same
        assert got.keys(q) == want.keys(q)
        assert [h.metadata for h in got.hits(q)] == [h.metadata for h in want.hits(q)]
    milvus.save(tmp_path / "idx")
    milvus.close()

    reopened = load_index(tmp_path / "idx")  # relative .db path: the directory can move
    assert isinstance(reopened, MilvusIndex) and len(reopened) == 300
    assert reopened.keys == keys(300) and reopened.metadata[:2] == metadata[:2]
    extra = data(20, 16, 2)
    reopened.add(extra, keys(20, 300))
    exact.add(extra, keys(20, 300))
    assert len(reopened) == 320
    want, got = exact.search(queries, 5), reopened.search(queries, 5)
    assert [got.keys(q) for q in range(9)] == [want.keys(q) for q in range(9)]
    assert reopened.search(extra[:1], 1).keys(0) == ["k300"]
    # k above the size gives every item
    assert reopened.search(queries[:1], 1000).indices.shape == (1, 320)
    reopened.close()


def test_upsert_replaces_rows_and_dimension_is_checked(tmp_path: Path) -> None:
    uri = str(tmp_path / "m.db")
    index = MilvusIndex(8, uri, "shards")
    first, second = data(10, 8, 3), data(10, 8, 4)
    index.upsert(first, keys(10), ids=list(range(10)))
    index.upsert(second, keys(10), ids=list(range(10)))  # the same shard loaded again
    assert len(index) == 10
    hit = index.search(second[3:4], 1).hits(0)[0]
    assert hit.key == "k3" and hit.score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(IndexError_, match=r"has dim 8, the embeddings have dim 4"):
        MilvusIndex(4, uri, "shards")
    with pytest.raises(IndexError_, match=r"must be \[n, 8\]"):
        index.add(data(2, 5, 0), keys(2))
    with pytest.raises(IndexError_, match="collection name"):
        MilvusIndex(8, uri, "1-bad")
    index.close()


def test_unreachable_server_is_a_one_line_error() -> None:
    with pytest.raises(IndexError_, match=r"cannot reach Milvus at http://127\.0\.0\.1:9") as err:
        MilvusIndex(4, "http://127.0.0.1:9", "items", timeout=1.0)
    assert "\n" not in str(err.value)


def test_missing_lite_file_is_a_clear_error(tmp_path: Path) -> None:
    index = MilvusIndex(4, str(tmp_path / "d" / "milvus.db"), "c")
    index.add(data(3, 4, 0), keys(3))
    index.save(tmp_path / "d")
    index.close()
    (tmp_path / "d" / "milvus.db").rename(tmp_path / "elsewhere.db")
    with pytest.raises(IndexError_, match="milvus-lite file .* is missing"):
        load_index(tmp_path / "d")
