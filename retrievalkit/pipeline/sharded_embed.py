"""Embed one shard of the items an index holds (``retrievalkit embed --shard i/N``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrievalkit.pipeline.build import load_splits, model_transform, require_split
from retrievalkit.pipeline.embed import embed_captions, embed_model_images
from retrievalkit.pipeline.items import ListSource, every_image_splits, unique_images
from retrievalkit.pipeline.load import LoadedModel
from retrievalkit.pipeline.shards import ShardError, ShardSpec, SidePart, write_shard


def embed_shard(
    loaded: LoadedModel,
    split_names: Sequence[str] | None,
    spec: ShardSpec,
    out: Path,
    progress: bool = True,
) -> Path:
    """Embed shard ``spec`` of the distinct images of ``split_names`` (default: every
    image of every style, as ``index build``) (and of their captions, for a
    cross-modal model) and write it under ``out``; returns its path.

    Every process loads the split lists (keys and captions, small) but embeds only
    its own rows, so ``N`` processes together embed each item once.
    """
    config, model = loaded.config, loaded.model
    splits_by_name = load_splits(config.data)
    if split_names is None:
        split_names = every_image_splits(list(splits_by_name))
    splits = [require_split(splits_by_name, name, config.data.name) for name in split_names]
    items, keys, metadata = unique_images(splits)
    rows = spec.rows(len(items))
    if len(rows) == 0:
        raise ShardError(f"shard {spec.index}/{spec.count} is empty: only {len(items)} images")
    source = ListSource([items[i] for i in rows])
    transform = model_transform(model, config.data, train=False, source_kind=source.kind)
    image_emb = embed_model_images(model, source, transform, progress=progress)
    parts = [
        SidePart(
            "images",
            image_emb.numpy(),
            keys[rows.start : rows.stop],
            list(metadata[rows.start : rows.stop]),
            rows.start,
            len(items),
        )
    ]
    if model.has_text:
        captions = [c for split in splits for c in split.captions]
        caption_keys = [split.image_keys[int(i)] for split in splits for i in split.caption_image]
        crows = spec.rows(len(captions))
        text_emb = embed_captions(
            model.encode_text, captions[crows.start : crows.stop], progress=progress
        )
        caption_meta: list[dict[str, Any] | None] = [
            {"caption": c} for c in captions[crows.start : crows.stop]
        ]
        parts.append(
            SidePart(
                "captions",
                text_emb.numpy(),
                caption_keys[crows.start : crows.stop],
                caption_meta,
                crows.start,
                len(captions),
            )
        )
    info = {"recipe": config.name, "splits": list(split_names)}
    return write_shard(out, spec, parts, info)
