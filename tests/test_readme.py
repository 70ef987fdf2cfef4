"""Every ```python snippet of README.md runs, in order, as written.

Substitutions (the only edits): the shipped recipe ``emoji_vsepp`` becomes a tiny
synthetic recipe and ``runs/emoji`` a temporary run directory, so the snippets
train, load and search a run made in seconds. The index the search snippet opens
is built with ``retrievalkit index build`` (as its comment says) before it runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import retrievalkit as rk
from retrievalkit.cli import main
from retrievalkit.errors import InputError

README = Path(__file__).resolve().parent.parent / "README.md"


def python_snippets(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_snippets_run(tmp_path, capsys, tiny_cross_modal, write_recipe):
    snippets = python_snippets(README.read_text())
    assert len(snippets) >= 6  # losses, DDP wrappers, metrics, and the API's three
    recipe = write_recipe(tmp_path / "tiny.yaml", tiny_cross_modal())
    run = tmp_path / "run"
    for snippet in snippets:
        code = snippet.replace('"emoji_vsepp"', f'"{recipe}"').replace("runs/emoji", str(run))
        if "SearchEngine(" in code and not (run / "index").exists():
            assert main(["index", "build", str(run), "--out", str(run / "index")]) == 0
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)
        if "rk.load(" in code:  # what the API snippet promises
            assert namespace["text"].shape == (2, 8) and namespace["image"].shape == (1, 8)
            assert np.allclose(np.linalg.norm(namespace["text"], axis=1), 1, atol=1e-5)
            assert isinstance(namespace["one"], torch.Tensor) and namespace["one"].shape == (8,)
            assert [len(h) for h in namespace["hits"]] == [1, 1]
            assert namespace["hits"][0][0]["corpus_id"] == 0
        if "rk.train(" in code:
            assert namespace["run_dir"] == run and (run / "metrics.json").exists()
    assert "1 " in capsys.readouterr().out  # the search snippet printed hits

    # the other inputs encode_image takes give the same embeddings as a PIL image
    encoder = rk.load(run)
    red = Image.new("RGB", (64, 64), "red")
    red.save(tmp_path / "red.png")
    expected = encoder.encode_image(red)
    assert expected.shape == (8,)  # one image -> [E]
    tensor = encoder.transform(red)  # a tensor is preprocessed model input
    pixels = np.asarray(red)
    for images in ([tmp_path / "red.png"], str(tmp_path / "red.png"), tensor, tensor[None],
                   pixels, pixels[None], [pixels], pixels / 255.0):  # fmt: skip
        assert np.allclose(encoder.encode_image(images), expected, atol=1e-6)
    assert encoder.encode_images(torch.stack([tensor] * 3)).shape == (3, 8)  # the old name
    with pytest.raises(InputError, match="expected a path, PIL image or numpy array, got int"):
        encoder.encode_image([3])


def test_import_is_light_and_api_names_resolve():
    import subprocess
    import sys

    code = (
        "import sys, retrievalkit as rk; heavy = [m for m in ('torch', 'numpy', 'PIL') "
        "if m in sys.modules]; assert not heavy, heavy; "
        "assert callable(rk.load) and callable(rk.train) and rk.SearchEngine; "
        "assert callable(rk.similarity) and callable(rk.semantic_search); "
        "import retrievalkit.training.trainer; assert callable(rk.train); "
        "assert rk.losses.VSELoss and rk.eval.cross_modal_recall"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert rk.__version__
