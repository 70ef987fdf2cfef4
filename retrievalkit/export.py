"""ONNX export, one file per tower (open_clip#186), with a parity check.

``export_onnx(model, out_dir, config)`` writes

- ``image_encoder.onnx``: ``images [N, C, H, W]`` (or ``[N, F]`` features), as the
  image encoder declares its input (``models/tower.py``; a frozen tower is exported
  whole, from pixels) -> ``embeddings [N, E]``;
- ``text_encoder.onnx`` (cross-modal models): the tokenized caption
  (``ids [N, L]`` and, for the GRU, ``lengths [N]``) -> ``embeddings [N, E]``;
  the vocabulary is saved next to it (``vocab.json``);
- ``export.json``: inputs, embedding size, the image preprocessing (side, mean,
  std), tokenizer facts.

Embeddings are L2-normalized, as ``encode_image`` / ``encode_text`` return them.
Batch size (and caption length for the GRU) are dynamic. After writing, each file
is run with onnxruntime on the example inputs and compared with PyTorch
(``max |diff|`` recorded in ``export.json``; an error above ``tolerance``).
Text towers without a token-level forward (the MiniLM sentence encoder, whose
tokenizer is a Hugging Face one) are reported as not exportable here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from retrievalkit.models.outputs import RetrievalModel
from retrievalkit.models.tower import image_input_of


class _ImageTower(nn.Module):
    """Images -> the model's image retrieval embedding (what ``encode_image`` gives)."""

    def __init__(self, model: RetrievalModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.encode_image(images)


def _export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    names: list[str],
    path: Path,
    dynamic: dict[str, dict[int, Any]],
) -> None:
    batch = torch.export.Dim("batch", min=1)
    length = torch.export.Dim("length", min=1)
    dims = {"batch": batch, "length": length}
    shapes = tuple({axis: dims[name] for axis, name in dynamic[n].items()} for n in names)
    torch.onnx.export(
        module,
        args,
        str(path),
        input_names=names,
        output_names=["embeddings"],
        dynamic_shapes=shapes,
        dynamo=True,
        verbose=False,
    )


def _parity(path: Path, inputs: dict[str, Tensor], expected: Tensor) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {k: v.cpu().numpy() for k, v in inputs.items()})
    return float((torch.from_numpy(got) - expected.float().cpu()).abs().max())


EXAMPLE_CAPTIONS = [
    "a dog runs across the park",
    "two people",
    "a red car parked by the sea at night",
]


def example_images(model: nn.Module, config: Any, batch: int = 3) -> Tensor:
    """Random inputs shaped as the model's image tower declares them (``image_input``:
    features ``[batch, F]`` or images ``[batch, C, S, S]`` at its side, else the
    recipe's ``data.image_size``)."""
    return image_input_of(model).example(batch, int(config.data.image_size))


def export_onnx(
    model: nn.Module,
    out_dir: str | Path,
    example_images: Tensor,
    example_captions: list[str] | None = None,
    tolerance: float = 1e-4,
) -> dict[str, Any]:
    """Write the towers of ``model`` (eval mode, CPU) to ``out_dir``; returns the manifest.

    Args:
        example_images: ``[N, ...]`` a batch as the model takes it (N >= 2).
        example_captions: N >= 2 captions (cross-modal models).
        tolerance: largest allowed ``|onnxruntime - torch|`` on the examples.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    manifest: dict[str, Any] = {"format": "retrievalkit-onnx-1", "towers": {}}
    image_dynamic = {"images": {0: "batch"}}
    with torch.no_grad():
        image_tower = _ImageTower(model).eval()
        expected = image_tower(example_images)
    path = out / "image_encoder.onnx"
    _export(image_tower, (example_images,), ["images"], path, image_dynamic)
    error = _parity(path, {"images": example_images}, expected)
    spec = image_input_of(model)
    manifest["towers"]["image"] = {
        "file": path.name,
        "inputs": {"images": list(example_images.shape[1:])},
        "preprocessing": {"kind": spec.kind, "mean": list(spec.mean), "std": list(spec.std)},
        "embed_dim": int(expected.shape[1]),
        "max_abs_diff": error,
    }
    if error > tolerance:
        raise ValueError(f"{path}: onnxruntime differs from torch by {error:.2e} (> {tolerance})")
    if model.has_text:
        manifest["towers"]["text"] = _export_text(model, out, example_captions, tolerance)
    (out / "export.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _export_text(
    model: RetrievalModel, out: Path, captions: list[str] | None, tolerance: float
) -> dict[str, Any]:
    tower = model.text_token_tower()
    encoder = getattr(tower, "encoder", None)
    if tower is None or encoder is None:
        kind = type(getattr(model, "text_encoder", model)).__name__
        return {"exported": False, "why": f"{kind} has no token-level forward"}
    if not captions or len(captions) < 2:
        raise ValueError("export needs at least 2 example captions for the text tower")
    tokens = tower.tokenize(captions)
    names = list(tokens)
    dynamic = {name: {0: "batch"} for name in names}
    if "lengths" in tokens:  # the GRU reads any length; the TextCNN has a fixed width
        dynamic["ids"] = {0: "batch", 1: "length"}
    tower = tower.eval()
    with torch.no_grad():
        expected = model.encode_text(captions)
    path = out / "text_encoder.onnx"
    _export(tower, tuple(tokens.values()), names, path, dynamic)
    error = _parity(path, tokens, expected)
    if error > tolerance:
        raise ValueError(f"{path}: onnxruntime differs from torch by {error:.2e} (> {tolerance})")
    vocab = getattr(encoder, "vocab", None)
    if vocab is not None:
        vocab.save(out / "vocab.json")
    return {
        "file": path.name,
        "inputs": {name: list(t.shape[1:]) for name, t in tokens.items()},
        "tokenizer": {
            "kind": type(encoder).__name__,
            "vocab": "vocab.json",
            "max_len": getattr(encoder, "max_len", None),
            "width": int(tokens["ids"].shape[1]) if "lengths" not in tokens else None,
        },
        "embed_dim": int(expected.shape[1]),
        "max_abs_diff": error,
        "exported": True,
    }
