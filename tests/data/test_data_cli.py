"""``retrievalkit data info`` and ``data show`` on small files the test writes."""

import json
import re

import numpy as np
from PIL import Image

from retrievalkit.cli import main
from retrievalkit.commands.data import parse_options


def write_pairs(tmp_path, image_writer):
    for i in range(5):
        image_writer(tmp_path / "imgs" / f"{i}.png", i)
    rows = [
        {"image": f"{i}.png", "caption": f"picture {i} number {j}"}
        for i in range(5)
        for j in range(2)
    ]
    for row in rows[:4]:
        row["split"] = "test"
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_parse_options_reads_yaml_values():
    assert parse_options(["size=128", "skin_tones=true", "lang=de", "x="]) == {
        "size": 128,
        "skin_tones": True,
        "lang": "de",
        "x": "",
    }


def test_data_info_prints_counts_and_source(tmp_path, image_writer, capsys):
    path = write_pairs(tmp_path, image_writer)
    options = ["--set", f"path={path}", "--set", f"root={tmp_path / 'imgs'}"]
    assert main(["data", "info", "pairs", *options]) == 0
    out = capsys.readouterr().out
    assert "test" in out and "source:" in out and str(path) in out
    assert main(["data", "info", "pairs", *options, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["test"]["images"] == 2 and info["test"]["captions"] == 4
    assert info["train"]["images"] == 3 and info["train"]["captions_per_image"] == "2-2"


def test_data_show_writes_a_grid(tmp_path, image_writer, capsys):
    path = write_pairs(tmp_path, image_writer)
    out = tmp_path / "grid.png"
    argv = ["data", "show", "pairs", "--set", f"path={path}", "--set", f"root={tmp_path / 'imgs'}"]
    assert main([*argv, "--split", "train", "-n", "3", "--out", str(out)]) == 0
    assert "3 items of pairs/train" in capsys.readouterr().out
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape[0] > 100 and picture.std() > 5


def test_data_show_labelled_split(tmp_path):
    from retrievalkit.data import ArrayImageSource, LabelledSplit
    from retrievalkit.data.overview import dataset_summary, save_grid

    split = LabelledSplit(
        "toy/test",
        ArrayImageSource(np.full((4, 8, 8), 128, dtype=np.uint8)),
        np.array([0, 1, 1, 0]),
        ["a", "b", "c", "d"],
        ["zero", "one"],
        "made in the test",
    )
    assert save_grid(split, tmp_path / "g.png", n=10) == [0, 1, 2, 3]
    assert "classes" in dataset_summary({"test": split})


def test_data_errors_end_with_one_message(tmp_path, capsys):
    bad = tmp_path / "pairs.csv"
    bad.write_text("image,caption\n../x.png,a\n")
    assert main(["data", "info", "pairs", "--set", f"path={bad}", "--set", f"root={tmp_path}"]) == 2
    assert re.fullmatch(
        r"error: .*pairs.csv:line 2: image path '../x.png' leaves the root.*\n",
        capsys.readouterr().err,
    )
    assert main(["data", "info", "nope"]) == 2
    assert re.fullmatch(
        r"error: unknown dataset 'nope'; known: .*emoji.*\n", capsys.readouterr().err
    )
    assert main(["data", "info", "pairs", "--set", "colour=red"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot build dataset 'pairs'")
