"""FaissIndex: flat equals exact; IVF/HNSW recall measured with ann_recall; storage."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retrievalkit.index import (
    ExactIndex,
    FaissIndex,
    IndexError_,
    ann_recall,
    load_index,
)

pytest.importorskip("faiss")


def clustered(n: int, d: int, clusters: int, seed: int) -> torch.Tensor:
    """Unit vectors around ``clusters`` random centres: ``[n, d]``."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(clusters, d, generator=g), dim=1)
    which = torch.randint(0, clusters, (n,), generator=g)
    return F.normalize(centres[which] + 0.15 * torch.randn(n, d, generator=g), dim=1)


def keys(n: int, prefix: str = "k") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_flat_equals_exact() -> None:
    g = torch.Generator().manual_seed(0)
    vectors, queries = torch.randn(257, 16, generator=g), torch.randn(9, 16, generator=g)
    exact, flat = ExactIndex(16, block_size=50), FaissIndex(16, kind="flat")
    for index in (exact, flat):
        index.add(vectors[:100], keys(100))
        index.add(vectors[100:], keys(157, "m"), [{"j": j} for j in range(157)])
    want, got = exact.search(queries, 12), flat.search(queries, 12)
    assert torch.equal(got.indices, want.indices)
    torch.testing.assert_close(got.scores, want.scores, atol=1e-5, rtol=0)
    got_hits, want_hits = got.hits(3), want.hits(3)
    assert [(h.rank, h.key, h.metadata) for h in got_hits] == [
        (h.rank, h.key, h.metadata) for h in want_hits
    ]
    assert ann_recall(flat, exact, queries, 12) == 1.0


@pytest.mark.parametrize(
    ("kind", "options"),
    [("ivf", {"nlist": 16, "nprobe": 8}), ("hnsw", {"hnsw_m": 16, "ef_search": 64})],
)
def test_ann_recall_on_clustered_data(kind: str, options: dict) -> None:
    vectors = clustered(2000, 24, clusters=20, seed=1)
    queries = clustered(100, 24, clusters=20, seed=2)
    exact, ann = ExactIndex(24), FaissIndex(24, kind=kind, **options)
    for index in (exact, ann):
        index.add(vectors, keys(2000))
    recall = ann_recall(ann, exact, queries, 10)
    assert recall > 0.9, f"{kind} recall@10 = {recall:.3f}"


def test_ivf_with_one_probe_loses_recall_and_marks_empty_slots() -> None:
    vectors = clustered(600, 8, clusters=12, seed=3)
    exact, ivf = ExactIndex(8), FaissIndex(8, kind="ivf", nlist=24, nprobe=1)
    for index in (exact, ivf):
        index.add(vectors, keys(600))
    queries = clustered(40, 8, clusters=12, seed=4)
    assert ann_recall(ivf, exact, queries, 10) < 1.0
    result = ivf.search(queries, 500)  # one list holds far fewer than 500 items
    empty = result.indices < 0
    assert bool(empty.any())
    assert bool(torch.isinf(result.scores[empty]).all())
    row = int(empty.any(dim=1).nonzero()[0])
    assert len(result.keys(row)) == int((~empty[row]).sum()) == len(result.hits(row))


def test_ivf_needs_enough_training_vectors() -> None:
    index = FaissIndex(8, kind="ivf", nlist=64)
    with pytest.raises(IndexError_, match="nlist=64 .* at least 64 vectors, got 10"):
        index.add(torch.randn(10, 8), keys(10))
    assert len(index) == 0


def test_unknown_kind_and_cpu_only() -> None:
    with pytest.raises(IndexError_, match="unknown faiss kind 'pq'"):
        FaissIndex(8, kind="pq")
    with pytest.raises(IndexError_, match="runs on the CPU"):
        FaissIndex(8).to("cuda")


@pytest.mark.parametrize(
    ("kind", "options"),
    [("flat", {}), ("ivf", {"nlist": 8, "nprobe": 8}), ("hnsw", {"hnsw_m": 8})],
)
def test_save_load_add_continues_ids(tmp_path: Path, kind: str, options: dict) -> None:
    vectors = clustered(300, 12, clusters=8, seed=5)
    index = FaissIndex(12, kind=kind, **options)
    index.add(vectors[:200], keys(200), [{"i": i} for i in range(200)])
    index.save(tmp_path)
    loaded = load_index(tmp_path)
    assert isinstance(loaded, FaissIndex)
    assert (loaded.kind, loaded.nlist, loaded.nprobe) == (index.kind, index.nlist, index.nprobe)
    assert loaded._faiss.ntotal == 200
    if kind == "ivf":
        assert loaded._faiss.nprobe == 8
    queries = vectors[:5]
    assert torch.equal(loaded.search(queries, 4).indices, index.search(queries, 4).indices)
    loaded.add(vectors[200:], keys(100, "new"))
    assert len(loaded) == 300 and loaded._faiss.ntotal == 300
    result = loaded.search(vectors[250:253], 1)
    assert result.indices[:, 0].tolist() == [250, 251, 252]
    assert result.keys(0) == ["new50"]
    assert result.hits(0)[0].metadata is None
    assert loaded.search(vectors[3:4], 1).hits(0)[0].metadata == {"i": 3}


def test_faiss_file_errors_name_the_file(tmp_path: Path) -> None:
    index = FaissIndex(4)
    index.add(torch.randn(5, 4), keys(5))
    index.save(tmp_path)
    (tmp_path / "faiss.index").write_bytes(b"not a faiss index")
    with pytest.raises(IndexError_, match=r"faiss.index: unreadable"):
        load_index(tmp_path)
    (tmp_path / "faiss.index").unlink()
    with pytest.raises(IndexError_, match=r"faiss.index: missing"):
        load_index(tmp_path)
    other = FaissIndex(4)
    other.add(torch.randn(3, 4), keys(3))
    other.save(tmp_path / "other")
    (tmp_path / "other" / "faiss.index").replace(tmp_path / "faiss.index")
    with pytest.raises(IndexError_, match=r"faiss.index: holds 3 vectors .* manifest says 5"):
        load_index(tmp_path)


def test_wrong_backend_class(tmp_path: Path) -> None:
    index = ExactIndex(4)
    index.add(np.eye(4, dtype=np.float32), keys(4))
    index.save(tmp_path)
    with pytest.raises(IndexError_, match="backend 'exact', expected 'faiss'"):
        FaissIndex.load(tmp_path)


def test_ann_recall_checks_sizes() -> None:
    a, b = ExactIndex(4), FaissIndex(4)
    a.add(torch.randn(3, 4), keys(3))
    b.add(torch.randn(4, 4), keys(4))
    with pytest.raises(IndexError_, match="differ in size"):
        ann_recall(b, a, torch.randn(2, 4), 2)


@pytest.mark.parametrize(
    ("kind", "options"),
    [("flat", {}), ("ivf", {"nlist": 8, "nprobe": 8}), ("hnsw", {"hnsw_m": 8})],
)
def test_vectors_live_only_in_faiss(tmp_path: Path, kind: str, options: dict) -> None:
    import faiss

    vectors = clustered(300, 12, clusters=8, seed=6)
    index = FaissIndex(12, kind=kind, **options)
    index.add(vectors[:100], keys(100))
    index.add(vectors[100:], keys(200, "b"))
    assert index._vectors.numel() == 0  # no second (torch) copy
    torch.testing.assert_close(index.vectors, vectors, atol=1e-6, rtol=0)  # reconstructed
    writer = faiss.VectorIOWriter()
    faiss.write_index(index._faiss, writer)
    assert index.nbytes() >= 300 * 12 * 4
    assert abs(index.nbytes() - writer.data.size()) < 1024  # its arrays = what it writes
    index.save(tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "vectors.npy"), vectors.numpy(), atol=1e-6)
    assert load_index(tmp_path).nbytes() == index.nbytes()
    exact = ExactIndex(12)
    exact.add(vectors, keys(300))
    assert exact.nbytes() == 300 * 12 * 4


def test_vectors_with_faiss_torch_utils_imported(tmp_path: Path) -> None:
    """``faiss.contrib.torch_utils`` (imported by other code) makes FAISS return tensors."""
    import faiss.contrib.torch_utils  # noqa: F401

    vectors = clustered(50, 8, clusters=4, seed=7)
    index = FaissIndex(8)
    index.add(vectors, keys(50))
    torch.testing.assert_close(index.vectors, vectors, atol=1e-6, rtol=0)
    index.save(tmp_path)
    assert load_index(tmp_path).search(vectors[:2], 1).indices[:, 0].tolist() == [0, 1]
