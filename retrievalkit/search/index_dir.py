"""An index directory: a trained model plus indexes of its embeddings, searchable.

Layout written by :func:`build_index_dir`::

    DIR/retrieval.json   what is here (task, recipe, backends, counts, splits)
    DIR/model/           the checkpoint (weights, recipe, vocabulary), no optimizer
    DIR/images/          index of image embeddings; key = the image's key
                         (emoji string, file path), metadata = its captions/label
                         and, for emoji, its art style (one item per key and style)
    DIR/captions/        (cross-modal) index of caption embeddings; key = the key of
                         the caption's image, metadata = {"caption": ...} (each
                         distinct (key, caption) once)
    DIR/pictures/        NNNNNN.png: image item NNNNNN as indexed (at most
                         ``PICTURE_SIZE`` px a side), named by its metadata's
                         ``picture``; the search page shows it for a hit

By default the index holds every image of every style (:func:`every_image_splits`:
what the demo indexes), each (key, style) once.

:class:`~retrievalkit.search.engine.SearchEngine` reads it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retrievalkit.pipeline.build import load_splits, model_transform, require_split
from retrievalkit.pipeline.embed import embed_captions, embed_model_images
from retrievalkit.pipeline.items import ListSource, every_image_splits, unique_images
from retrievalkit.pipeline.load import load_model
from retrievalkit.run.checkpoint import (
    CHECKSUM_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    STATE_FILE,
    VOCAB_FILE,
)
from retrievalkit.run.files import atomic_write_text, file_sha256
from retrievalkit.search.backends import new_index

MANIFEST = "retrieval.json"
PICTURES = "pictures"
PICTURE_SIZE = 96


def write_pictures(source: Any, out: Path, progress: bool = False) -> list[str]:
    """Each image item of ``source`` as ``out/NNNNNN.png`` (at most ``PICTURE_SIZE``
    px a side); returns the file names, in item order."""
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    names = []
    for i in tqdm(range(len(source)), desc="pictures", disable=not progress, leave=False):
        image = source.load(i)
        image.thumbnail((PICTURE_SIZE, PICTURE_SIZE))
        name = f"{i:06d}.png"
        image.save(out / name)
        names.append(name)
    return names


def describe(manifest: dict[str, Any]) -> str:
    """What an index holds, one line: images (per split, per style), captions, splits."""
    counts = [
        "; ".join(f"{name} {count:,}" for name, count in manifest[field].items())
        for field in ("images_by_split", "images_by_style")
        if manifest.get(field)
    ]
    line = f"indexed {manifest.get('num_images', 0):,} images"
    if counts:
        line += " (" + " | ".join(counts) + ")"
    if "num_captions" in manifest:
        line += f" and {manifest['num_captions']:,} captions"
    return line + f" from splits {', '.join(manifest.get('splits') or [])}"


def _copy_model(checkpoint_dir: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, CONFIG_FILE, STATE_FILE, VOCAB_FILE, CHECKSUM_FILE):
        if (checkpoint_dir / name).exists():
            shutil.copyfile(checkpoint_dir / name, out / name)


def _fill_from_shards(index: Any, shards: Path, side: str) -> None:
    """Add a side's rows shard by shard (Milvus: upsert with the global row ids)."""
    from retrievalkit.pipeline.shards import iter_side

    for part in iter_side(shards, side):
        vectors = np.array(part.vectors)  # this shard only, read from its memory map
        if hasattr(index, "upsert"):
            ids = list(range(part.start, part.start + len(part.keys)))
            index.upsert(vectors, part.keys, ids, part.metadata)
        else:
            index.add(vectors, part.keys, part.metadata)


def build_index_dir(
    checkpoint: str | Path,
    out: str | Path,
    split_names: Sequence[str] | None = None,
    backend: str = "exact",
    device: str | torch.device = "cpu",
    progress: bool = True,
    data_overrides: dict[str, Any] | None = None,
    index_options: dict[str, Any] | None = None,
    shards: str | Path | None = None,
    pictures: bool = True,
) -> Path:
    """Embed every image (and caption) of ``split_names`` (default: every image of
    every style, :func:`every_image_splits`) and write an index directory; with
    ``pictures``, each image as indexed too (``DIR/pictures``, for the page).

    ``shards``: a directory of ``embed --shard`` outputs of this model to index
    instead of embedding here (read one shard at a time; their splits are used).
    ``index_options``: backend settings (milvus: ``uri``, ``collection``).
    """
    out = Path(out)
    options = index_options or {}
    loaded = load_model(checkpoint, device)
    config = loaded.config
    out.mkdir(parents=True, exist_ok=True)
    _copy_model(loaded.checkpoint_dir, out / "model")
    task = "cross_modal" if loaded.model.has_text else "metric"
    manifest: dict[str, Any] = {
        "task": task,
        "recipe": config.name,
        "backend": backend,
        "model_sha256": file_sha256(out / "model" / MODEL_FILE),
    }
    if shards is not None:
        manifest.update(_index_shards(Path(shards), config.name, out, backend, options))
        atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2))
        return out
    data = config.data
    if data_overrides:
        data = replace(data, options={**data.options, **data_overrides})
    splits_by_name = load_splits(data)
    if split_names is None:
        split_names = every_image_splits(list(splits_by_name))
    splits = [require_split(splits_by_name, name, data.name) for name in split_names]
    items, keys, metadata = unique_images(splits)
    source = ListSource(items)
    if pictures and source.kind == "image":
        names = write_pictures(source, out / PICTURES, progress)
        metadata = [{**meta, "picture": name} for meta, name in zip(metadata, names, strict=True)]
    model = loaded.model
    transform = model_transform(model, data, train=False, source_kind=source.kind)
    image_emb = embed_model_images(model, source, transform, progress=progress)
    image_index = new_index(backend, image_emb.shape[1], out / "images", options)
    image_index.add(image_emb, keys, metadata)
    image_index.save(out / "images")
    manifest.update(
        {
            "splits": list(split_names),
            "num_images": len(keys),
            "images_by_split": _counts(meta["split"] for meta in metadata),
            "images_by_style": _counts(meta["style"] for meta in metadata if "style" in meta),
        }
    )
    if model.has_text:
        pairs = dict.fromkeys(
            (split.image_keys[int(i)], caption)
            for split in splits
            for caption, i in zip(split.captions, split.caption_image, strict=True)
        )
        caption_keys, captions = [k for k, _ in pairs], [c for _, c in pairs]
        text_emb = embed_captions(model.encode_text, captions, progress=progress)
        caption_index = new_index(backend, text_emb.shape[1], out / "captions", options)
        caption_index.add(text_emb, caption_keys, [{"caption": c} for c in captions])
        caption_index.save(out / "captions")
        manifest["num_captions"] = len(captions)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2))
    return out


def _counts(names: Any) -> dict[str, int]:
    """How often each name occurs, in first-seen order."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def _index_shards(
    shards: Path, recipe: str, out: Path, backend: str, options: dict[str, Any]
) -> dict[str, Any]:
    """Index every side of a shard directory under ``out``; the manifest's counts."""
    from retrievalkit.pipeline.shards import ShardError, open_shards

    first = open_shards(shards)[0][1]
    if first.get("recipe") != recipe:
        raise ShardError(f"{shards}: embedded by recipe {first.get('recipe')!r}, not {recipe!r}")
    counts: dict[str, Any] = {"splits": first.get("splits"), "shards": first["num_shards"]}
    for side, info in first["sides"].items():
        index = new_index(backend, info["dim"], out / side, options)
        _fill_from_shards(index, shards, side)
        index.save(out / side)
        counts[f"num_{side}"] = info["total"]
    return counts
