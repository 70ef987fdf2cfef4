"""``embed --shard i/N`` then ``index build --from-shards`` (exact, FAISS, Milvus) equals
an index built in one go; shard specs and incomplete shard directories."""

import json
from pathlib import Path

import numpy as np
import pytest

from retrievalkit.cli import main
from retrievalkit.pipeline.shards import ShardError, ShardSpec, open_shards
from retrievalkit.search import SearchEngine

QUERIES = ["a red circle", "blue square", "small green triangle"]


def test_shard_spec_rows_tile_the_items():
    for total in (0, 1, 7, 100):
        rows = [ShardSpec(i, 3).rows(total) for i in range(3)]
        assert [r for part in rows for r in part] == list(range(total))
    assert ShardSpec.parse(" 2/5 ") == ShardSpec(2, 5) and ShardSpec(2, 5).name.endswith(
        "2-of-00005"
    )
    for bad in ("5/5", "-1/2", "1", "a/b"):
        with pytest.raises(ShardError, match="expected i/N"):
            ShardSpec.parse(bad)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_cross_modal, write_recipe) -> Path:
    tmp = tmp_path_factory.mktemp("sharded")
    tiny = tiny_cross_modal(data={"options": {"n_images": 40}}, optim={"lr": 1e-3})
    recipe = write_recipe(tmp / "tiny.yaml", tiny)
    run = tmp / "run"
    assert main(["train", str(recipe), "--out", str(run), "--no-progress", "--device", "cpu"]) == 0
    return run


def search_all(index_dir: Path) -> list:
    engine = SearchEngine(index_dir)
    text = engine.search_text(QUERIES, k=5, mode="image")
    fused = engine.search_text(QUERIES, k=5)
    return [[(h.key, round(h.score, 4), h.caption) for h in hits] for hits in text + fused]


@pytest.mark.slow
def test_shards_load_into_every_backend_like_a_direct_build(run_dir, tmp_path):
    direct = tmp_path / "direct"
    assert main(["index", "build", str(run_dir), "--out", str(direct), "--device", "cpu"]) == 0
    shards = tmp_path / "shards"
    for i in range(3):  # as three processes would, each writing its own shard
        assert main(["embed", str(run_dir), "--shard", f"{i}/3", "--out", str(shards)]) == 0
    manifests = [m for _, m in open_shards(shards)]
    assert [m["sides"]["images"]["start"] for m in manifests] == [0, 13, 26]  # 40 images
    assert (
        sum(m["sides"]["captions"]["count"] for m in manifests)
        == json.loads((direct / "retrieval.json").read_text())["num_captions"]
    )
    want = search_all(direct)
    direct_vectors = np.load(direct / "images" / "vectors.npy")
    for backend in ("exact", "faiss", "milvus"):
        if backend == "faiss":
            pytest.importorskip("faiss")
        if backend == "milvus":
            pytest.importorskip("pymilvus")
        out = tmp_path / backend
        args = ["index", "build", str(run_dir), "--out", str(out), "--from-shards", str(shards)]
        assert main([*args, "--backend", backend, "--device", "cpu"]) == 0
        manifest = json.loads((out / "retrieval.json").read_text())
        assert manifest["shards"] == 3 and manifest["num_images"] == 40
        if backend == "exact":  # the same vectors, in the same order
            np.testing.assert_allclose(np.load(out / "images" / "vectors.npy"), direct_vectors)
        assert search_all(out) == want, backend


def test_missing_or_mixed_shards_are_clear_errors(run_dir, tmp_path):
    shards = tmp_path / "shards"
    assert main(["embed", str(run_dir), "--shard", "1/2", "--out", str(shards)]) == 0
    with pytest.raises(ShardError, match=r"1 of 2 shards; missing \[0\]"):
        open_shards(shards)
    assert main(["embed", str(run_dir), "--shard", "0/3", "--out", str(shards)]) == 0
    with pytest.raises(ShardError, match="num_shards"):
        open_shards(shards)
    with pytest.raises(ShardError, match="no shard"):
        open_shards(tmp_path / "nothing")
