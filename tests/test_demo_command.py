"""``retrievalkit demo`` runs end to end on a tiny emoji recipe: trains, scores, indexes
every image of every style (as ``index build RUN`` does) and says so, searches."""

from __future__ import annotations

import json

import pytest

from retrievalkit.cli import main
from tests.reliability.conftest import HAVE_EMOJI, tiny_recipe

pytestmark = [
    pytest.mark.slow,
    pytest.mark.debian_data,
    pytest.mark.skipif(not HAVE_EMOJI, reason="needs fonts-noto-color-emoji, unicode-cldr-core"),
]


def test_demo_runs_and_indexes_what_index_build_indexes(tmp_path, capsys, write_recipe):
    recipe = write_recipe(tmp_path / "tiny.yaml", {**tiny_recipe(True), "epochs": 1})
    out = tmp_path / "demo"
    assert main(["demo", "--recipe", str(recipe), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    demo_index = json.loads((out / "index" / "retrieval.json").read_text())
    assert f"Index: indexed {demo_index['num_images']:,} images (" in printed
    assert "Search quality" in printed and (out / "metrics.json").exists()
    assert (
        main(["index", "build", str(out), "--out", str(tmp_path / "built"), "--no-pictures"]) == 0
    )
    built = json.loads((tmp_path / "built" / "retrieval.json").read_text())
    assert built["splits"] == demo_index["splits"]
    assert built["num_images"] == demo_index["num_images"]
    assert built["images_by_style"] == demo_index["images_by_style"]
