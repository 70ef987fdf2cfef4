"""A frozen pretrained tower end to end: cached features (computed once, reused by a
second run), cached augmented views, and every path (eval, embed, index, search,
the HTTP service, ``rk.load``, ONNX export) on a few synthetic images with
EfficientNet-Lite0 at 64 px (its declared input side here)."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("efficientnet_lite_pytorch")

from retrievalkit.cli import main
from retrievalkit.pipeline.tower_cache import item_digest, view_key
from retrievalkit.run.config import parse_config
from retrievalkit.training.trainer import Trainer

RECIPE = {
    "name": "tiny_lite0",
    "task": "cross_modal",
    "data": {
        "name": "synthetic_shapes",
        "options": {"n_images": 24, "size": 32},
        "image_size": 32,
        "batch_size": 6,
        "views": 3,
    },
    "model": {
        "image": {"name": "efficientnet_lite0", "image_size": 64, "head": "mlp"},
        "text": {"name": "gru", "word_dim": 8, "hidden_dim": 16},
        "embed_dim": 8,
    },
    "optim": {"lr": 1e-3},
    "stages": [{"name": "clip", "epochs": 1, "losses": [{"name": "clip"}]}],
}
N_TRAIN, N_VAL, N_TEST = 16, 4, 4  # synthetic_shapes' 2/3, 1/6, 1/6 of 24


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RETRIEVALKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def trainer(tmp_path, name, **changes):
    raw = json.loads(json.dumps(RECIPE))
    for path, value in changes.items():
        node = raw
        *parents, last = path.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return Trainer(parse_config(raw), tmp_path / name, progress=False)


def test_features_are_computed_once_and_reused_by_another_run(tmp_path, cache_dir):
    first = trainer(tmp_path, "first")
    cache = first.model.image_encoder.feature_cache
    assert cache.computed == N_TRAIN * 3  # every training image in 3 views
    first.fit()
    assert cache.computed == N_TRAIN * 3 + N_VAL  # + the val images (view 0)
    assert list((cache_dir / "features").glob("*/part-*.npz"))
    assert (cache.store.directory / "trunk.onnx").exists()

    # view 0 is the trunk of the evaluation transform, to float16 precision
    split = first.train_split
    encoder = first.model.image_encoder
    with torch.no_grad():
        direct = encoder.trunk(first.eval_transform(split.images.load(0))[None])[0]
    stored = cache.rows[view_key(item_digest(split.images.load(0)), 0)]
    torch.testing.assert_close(
        torch.from_numpy(stored.astype(np.float32)), direct, atol=2e-2, rtol=1e-2
    )
    views = [cache.rows[view_key(item_digest(split.images.load(0)), v)] for v in range(3)]
    assert not np.array_equal(views[1], views[2])  # two different random crops

    second = trainer(tmp_path, "second", seed=1, model__image__head="linear")
    assert second.model.image_encoder.feature_cache.computed == 0  # read from disk
    second.fit()
    assert second.model.image_encoder.feature_cache.computed == 0
    assert second.loader_split.images.views == 3


def test_every_path_works_with_the_frozen_tower(tmp_path, cache_dir, capsys):
    import yaml

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()

    out = tmp_path / "emb.npz"
    assert main(["embed", str(run), "--split", "test", "--out", str(out)]) == 0
    embedded = np.load(out)["image_emb"]
    assert embedded.shape == (N_TEST, 8)

    import retrievalkit as rk
    from retrievalkit.data import load_dataset

    test = load_dataset("synthetic_shapes", n_images=24, size=32)["test"]
    image_path = tmp_path / "query.png"
    test.images.load(0).save(image_path)
    encoder = rk.load(run)
    assert encoder.transform(Image.open(image_path)).shape == (3, 64, 64)  # the tower's side
    from_api = encoder.encode_images([image_path, test.images.load(1)])
    np.testing.assert_allclose(from_api, embedded[:2], atol=5e-3)  # cached (fp16) vs direct

    index = tmp_path / "index"
    assert main(["index", "build", str(run), "--out", str(index)]) == 0
    capsys.readouterr()
    for mode in ("image", "fused"):
        assert main(["search", str(index), "--text", "a red circle", "--mode", mode, "--json"]) == 0
        assert len(json.loads(capsys.readouterr().out)["hits"]) == 10
    assert main(["search", str(index), "--image", str(image_path), "-k", "1", "--json"]) == 0
    (hit,) = json.loads(capsys.readouterr().out)["hits"]
    assert hit["key"] == test.image_keys[0]  # the query image finds itself in the index

    from fastapi.testclient import TestClient

    from retrievalkit.serve.app import app_for_index

    client = TestClient(app_for_index(index))
    served = client.get("/search", params={"q": "a red circle", "k": 3}).json()["hits"]
    picture = client.get(f"/pictures/{served[0]['metadata']['picture']}")  # the indexed image
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"

    exported = tmp_path / "onnx"
    assert main(["export", str(run), "--out", str(exported)]) == 0
    towers = json.loads((exported / "export.json").read_text())["towers"]
    assert towers["image"]["inputs"]["images"] == [3, 64, 64]
    assert towers["image"]["max_abs_diff"] < 1e-4
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported / "image_encoder.onnx"))
    pixels = encoder.transform(Image.open(image_path))[None].numpy()
    (onnx_emb,) = session.run(None, {"images": pixels})
    np.testing.assert_allclose(onnx_emb[0], from_api[0], atol=5e-3)


def test_fine_tuning_trains_the_top_only_after_the_warm_up(tmp_path, cache_dir):
    """trainable_stages=1: the cached input of the last stage feeds training; the head
    warm-up leaves the tower as loaded, the next stage trains the last stage and head
    conv in their own optimizer group, and the frozen stages and every BN's running
    statistics never change."""
    fine = trainer(
        tmp_path,
        "ft",
        model__image__trainable_stages=1,
        data__views=1,
        optim={"lr": 1e-3, "groups": [{"name": "tower", "params": ["image_encoder"], "lr": 1e-4}]},
        stages=[
            {
                "name": "warmup",
                "epochs": 1,
                "freeze": ["image_encoder"],
                "losses": [{"name": "clip"}],
            },
            {"name": "finetune", "epochs": 1, "losses": [{"name": "clip"}]},
        ],
    )
    encoder = fine.model.image_encoder
    assert fine.loader_split.images.load(0).shape == encoder.cached_shape == (192, 2, 2)
    assert set(fine.groups) == {"main", "tower"}
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    both = fine.config
    fine.config = dataclasses.replace(both, stages=both.stages[:1])
    fine.fit()  # the warm-up stage alone
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, before[key]), key
    fine.config = both
    fine.fit()  # goes on with the fine-tuning stage
    after = encoder.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith(("stages.6.", "head.0.", "head.1.")) for k in changed)
    assert not any("running" in k for k in changed)  # BN statistics stay frozen
