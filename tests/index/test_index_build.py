"""``index build RUN`` indexes what the demo indexes (every image of every style),
says what it indexed, keeps each image as indexed for the page, and the exact and
Milvus backends rank the same top 10 on the same build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from retrievalkit.cli import main
from retrievalkit.data import load_dataset
from retrievalkit.pipeline.items import every_image_splits
from retrievalkit.search import SearchEngine
from tests.reliability.conftest import HAVE_EMOJI, tiny_recipe

pytestmark = [
    pytest.mark.slow,
    pytest.mark.debian_data,
    pytest.mark.skipif(not HAVE_EMOJI, reason="needs fonts-noto-color-emoji, unicode-cldr-core"),
]
QUERIES = ["red heart", "sad rainy day", "cat", "thumbs up", "birthday cake"]


def test_every_image_splits_is_train_plus_each_style_view():
    assert every_image_splits(["train", "val", "test", "val_noto", "test_noto"]) == [
        "train",
        "val_noto",
        "test_noto",
    ]
    assert every_image_splits(["train", "val", "test"]) == ["train", "val", "test"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    import yaml

    tmp = tmp_path_factory.mktemp("emoji_index")
    recipe = tmp / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**tiny_recipe(True), "epochs": 1}))
    assert main(["train", str(recipe), "--out", str(tmp / "run"), "--device", "cpu"]) == 0
    return tmp / "run"


def test_index_build_indexes_every_image_of_every_style(run_dir, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "index"
    assert main(["index", "build", str(run_dir), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "retrieval.json").read_text())
    splits = load_dataset("emoji", **tiny_recipe(True)["data"]["options"])
    every = {(key, style) for split in splits.values()
             for key, style in zip(split.image_keys, split.image_styles, strict=True)}  # fmt: skip
    assert manifest["num_images"] == len(every)  # all splits, all styles, each once
    assert len(manifest["images_by_style"]) == len({style for _, style in every}) > 1
    assert sum(manifest["images_by_style"].values()) == len(every)
    line = next(line for line in printed.splitlines() if line.startswith("indexed "))
    assert line.startswith(f"indexed {len(every):,} images (emoji/train ") and "noto" in line
    # each image as indexed, named by its metadata, for the page
    engine = SearchEngine(out)
    hit = engine.search_text(["red heart"], 1)[0][0]
    with Image.open(out / "pictures" / hit.metadata["picture"]) as picture:
        assert picture.size == (32, 32)


def test_exact_and_milvus_give_the_same_top_10(run_dir, tmp_path, capsys):
    pytest.importorskip("pymilvus")
    ranked = {}
    for backend in ("exact", "milvus"):
        out = tmp_path / backend
        argv = ["index", "build", str(run_dir), "--out", str(out), "--backend", backend]
        assert main([*argv, "--device", "cpu", "--no-pictures"]) == 0
        engine = SearchEngine(out)
        ranked[backend] = [
            [(h.key, (h.metadata or {}).get("style"), round(h.score, 4)) for h in hits]
            for mode in ("image", "fused")
            for hits in engine.search_text(QUERIES, 10, mode=mode)
        ]
    assert all(len(hits) == 10 for hits in ranked["exact"])
    assert ranked["milvus"] == ranked["exact"]
