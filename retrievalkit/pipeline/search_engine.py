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

Images sharing a key (an emoji in several styles) are one result: searches return
one hit per key, its best-scoring image (``distinct_keys=False``: every image).

:class:`SearchEngine` opens such a directory once and answers text->image,
image->image and image->text queries; the CLI and the HTTP service both use it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from retrievalkit.errors import InputError, MissingFileError
from retrievalkit.pipeline.build import build_transform, load_splits, require_split
from retrievalkit.pipeline.embed import embed_captions, embed_images, model_device
from retrievalkit.pipeline.items import ListSource, unique_images
from retrievalkit.pipeline.load import LoadedModel, load_model
from retrievalkit.run.checkpoint import (
    CHECKSUM_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    STATE_FILE,
    VOCAB_FILE,
)

MANIFEST = "retrieval.json"
DEFAULT_IMAGE_WEIGHT = 0.4  # fused text search; see search_text


@dataclass(frozen=True)
class SearchHit:
    """One result: 1-based rank, cosine score, the item's key and its caption/label."""

    rank: int
    score: float
    key: str
    caption: str | None = None
    metadata: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_model(checkpoint_dir: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, CONFIG_FILE, STATE_FILE, VOCAB_FILE, CHECKSUM_FILE):
        if (checkpoint_dir / name).exists():
            shutil.copyfile(checkpoint_dir / name, out / name)


def _new_index(backend: str, dim: int, directory: Path, options: dict[str, Any]) -> Any:
    """An empty index for ``directory`` (one side). ``options`` (milvus): ``uri`` (a
    server, or a milvus-lite file; default ``directory/milvus.db``) and ``collection``
    (a prefix; the side's name is appended)."""
    from retrievalkit.index import ExactIndex, FaissIndex, IndexError_, MilvusIndex

    if backend == "exact":
        return ExactIndex(dim)
    if backend.startswith("faiss"):
        kind = backend.partition("-")[2] or "flat"
        return FaissIndex(dim, kind=kind)
    if backend == "milvus":
        uri = options.get("uri") or str(directory / "milvus.db")
        collection = f"{options.get('collection') or 'retrievalkit'}_{directory.name}"
        index = MilvusIndex(dim, uri, collection)
        if len(index):
            raise IndexError_(
                f"Milvus collection {collection!r} at {uri} already holds {len(index)} items; "
                "choose another --collection, or add to it with MilvusIndex.add / upsert"
            )
        return index
    raise InputError(
        f"unknown index backend {backend!r}; use exact, faiss, faiss-ivf, faiss-hnsw, milvus"
    )


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
    split_names: Sequence[str] = ("train", "val", "test"),
    backend: str = "exact",
    device: str | torch.device = "cpu",
    progress: bool = True,
    data_overrides: dict[str, Any] | None = None,
    index_options: dict[str, Any] | None = None,
    shards: str | Path | None = None,
) -> Path:
    """Embed every image (and caption) of ``split_names`` and write an index directory.

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
        "model_sha256": _file_sha256(out / "model" / MODEL_FILE),
    }
    if shards is not None:
        manifest.update(_index_shards(Path(shards), config.name, out, backend, options))
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return out
    data = config.data
    if data_overrides:
        from dataclasses import replace

        data = replace(data, options={**data.options, **data_overrides})
    splits_by_name = load_splits(data)
    splits = [require_split(splits_by_name, name, data.name) for name in split_names]
    items, keys, metadata = unique_images(splits)
    source = ListSource(items)
    transform = build_transform(source.kind, data, train=False)
    model = loaded.model
    image_emb = embed_images(
        model.encode_image, source, transform, model_device(model), progress=progress
    )
    image_index = _new_index(backend, image_emb.shape[1], out / "images", options)
    image_index.add(image_emb, keys, metadata)
    image_index.save(out / "images")
    manifest.update({"splits": list(split_names), "num_images": len(keys)})
    if model.has_text:
        pairs = dict.fromkeys(
            (split.image_keys[int(i)], caption)
            for split in splits
            for caption, i in zip(split.captions, split.caption_image, strict=True)
        )
        caption_keys, captions = [k for k, _ in pairs], [c for _, c in pairs]
        text_emb = embed_captions(model.encode_text, captions, progress=progress)
        caption_index = _new_index(backend, text_emb.shape[1], out / "captions", options)
        caption_index.add(text_emb, caption_keys, [{"caption": c} for c in captions])
        caption_index.save(out / "captions")
        manifest["num_captions"] = len(captions)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return out


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
        index = _new_index(backend, info["dim"], out / side, options)
        _fill_from_shards(index, shards, side)
        index.save(out / side)
        counts[f"num_{side}"] = info["total"]
    return counts


def best_by_key(
    index: Any, emb: torch.Tensor, depth: int
) -> list[tuple[dict[str, tuple[float, dict[str, Any] | None]], float]]:
    """Per query of ``emb [Q, D]``: ``{key: (best score, that item's metadata)}`` over
    the top ``depth`` items of ``index``, and the lowest score seen (a bound for unseen
    keys). Items are read through the search result (a Milvus result numbers only
    the items it found), never by position in the index."""
    result = index.search(emb, min(depth, len(index)))
    out = []
    for q in range(emb.shape[0]):
        best: dict[str, tuple[float, dict[str, Any] | None]] = {}
        for score, i in zip(result.scores[q].tolist(), result.indices[q].tolist(), strict=True):
            if i < 0:  # an approximate index found fewer items than asked
                continue
            key = result.item_keys[i]
            if key not in best or score > best[key][0]:
                best[key] = (score, result.item_metadata[i])
        seen = [v for v in result.scores[q].tolist() if v != float("-inf")]
        out.append((best, min(seen) if seen else -2.0))
    return out


def item_hit(rank: int, score: float, key: str, metadata: dict[str, Any] | None) -> SearchHit:
    """A hit for an item: its key, caption (or first caption) and metadata."""
    meta = dict(metadata or {})
    caption = meta.pop("caption", None)
    if caption is None and meta.get("captions"):
        caption = meta["captions"][0]
    return SearchHit(rank, float(score), key, caption, meta or None)


def one_hit_per_key(index: Any, emb: torch.Tensor, k: int) -> list[list[SearchHit]]:
    """Per query of ``emb [Q, D]``: the ``k`` best keys, each at its best-scoring item
    (e.g. an emoji at its best-matching style); ties broken by key."""
    hits = []
    for best, _ in best_by_key(index, emb, max(20 * k, 200)):
        ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:k]
        hits.append(
            [
                item_hit(rank, score, key, meta)
                for rank, (key, (score, meta)) in enumerate(ranked, 1)
            ]
        )
    return hits


class SearchEngine:
    """Search an index directory with its own model (stateless after opening)."""

    def __init__(self, directory: str | Path, device: str | torch.device = "cpu") -> None:
        from retrievalkit.index import load_index

        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST
        if not manifest_path.exists():
            raise MissingFileError(
                f"{self.directory}: not an index directory (no {MANIFEST}); "
                "make one with `retrievalkit index build RUN --out DIR`"
            )
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"{manifest_path}: unreadable ({err})") from None
        self.loaded: LoadedModel = load_model(self.directory / "model", device)
        self.images = load_index(self.directory / "images")
        self.captions = None
        if (self.directory / "captions").exists():
            self.captions = load_index(self.directory / "captions")
        self._check_same_model()
        self.transform = build_transform("image", self.loaded.config.data, train=False)
        self._image_metadata: dict[str, Any] = {}
        for key, meta in zip(self.images.keys, self.images.metadata, strict=True):
            self._image_metadata.setdefault(key, meta)

    def _check_same_model(self) -> None:
        """The indexes hold this model's embeddings (same file, same dimension)."""
        model_file = self.directory / "model" / MODEL_FILE
        recorded = self.manifest.get("model_sha256")  # indexes built before have none
        if recorded is not None and recorded != _file_sha256(model_file):
            raise InputError(
                f"{model_file}: not the model this index was built with (sha256 differs from "
                f"{MANIFEST}); rebuild it with `retrievalkit index build`"
            )
        dim = self.loaded.config.model.embed_dim
        for name, index in (("images", self.images), ("captions", self.captions)):
            if index is not None and index.dim != dim:
                raise InputError(
                    f"{self.directory / name}: embeddings of dimension {index.dim}, but the "
                    f"model embeds in {dim}; the index comes from another model"
                )

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    def _hits(self, result: Any, query: int) -> list[SearchHit]:
        hits = []
        for hit in result.hits(query):
            meta = dict(hit.metadata or {})
            caption = meta.pop("caption", None)
            if caption is None and meta.get("captions"):
                caption = meta["captions"][0]
            hits.append(SearchHit(hit.rank, float(hit.score), hit.key, caption, meta or None))
        return hits

    @torch.no_grad()
    def search_text(
        self,
        queries: Sequence[str],
        k: int = 10,
        mode: str = "fused",
        image_weight: float = DEFAULT_IMAGE_WEIGHT,
        distinct_keys: bool = True,
    ) -> list[list[SearchHit]]:
        """Text -> image: the ``k`` best items for each text query.

        ``mode="image"`` ranks by the query's similarity to each item's image
        embedding (the trained model alone; with ``distinct_keys``, one hit per key
        at its best image, e.g. an emoji in its best-matching style). ``mode="fused"`` (default, when the index has captions) ranks by
        ``image_weight * s_image + (1 - image_weight) * s_caption``, where
        ``s_caption`` is the best similarity to the item's caption embeddings: both
        are the trained model's embeddings in its joint space (no keyword matching);
        the captions carry items whose image the model never saw in training.
        The default weight 0.4 was picked on the demo's emoji query set (RESULTS.md
        shows the sweep; 0.3-0.5 differ by at most 2 of 105 literal queries).
        """
        if not self.model.has_text:
            raise InputError("this index was built from a metric-learning model: no text queries")
        if mode not in ("fused", "image"):
            raise InputError(f"mode must be 'fused' or 'image', got {mode!r}")
        for position, query in enumerate(queries):
            if not query.strip():
                raise InputError(f"query {position}: empty (expected some text)")
        emb = embed_captions(self.model.encode_text, list(queries))
        if (mode == "image" or self.captions is None) and distinct_keys:
            return one_hit_per_key(self.images, emb, k)
        if mode == "image" or self.captions is None:
            result = self.images.search(emb, k)
            return [self._hits(result, q) for q in range(len(queries))]
        depth = max(20 * k, 200)
        image_side = best_by_key(self.images, emb, depth)
        caption_side = best_by_key(self.captions, emb, 5 * depth)
        hits = []
        for (img_best, img_floor), (cap_best, cap_floor) in zip(
            image_side, caption_side, strict=True
        ):
            fused = {
                key: image_weight * img_best.get(key, (img_floor, None))[0]
                + (1 - image_weight) * cap_best.get(key, (cap_floor, None))[0]
                for key in set(img_best) | set(cap_best)
            }
            ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
            hits.append(
                [
                    self._hit_for_key(rank, score, key, img_best.get(key, (0.0, None))[1])
                    for rank, (key, score) in enumerate(ranked, start=1)
                ]
            )
        return hits

    def _hit_for_key(
        self, rank: int, score: float, key: str, metadata: dict[str, Any] | None = None
    ) -> SearchHit:
        """A fused hit: ``metadata`` (of the key's best image) or its first image's."""
        meta = dict(metadata if metadata is not None else self._image_metadata.get(key) or {})
        captions = meta.get("captions") or [None]
        return SearchHit(rank, score, key, captions[0], meta or None)

    @torch.no_grad()
    def search_image(
        self,
        paths: Sequence[str | Path],
        k: int = 10,
        target: str = "images",
        distinct_keys: bool = True,
    ) -> list[list[SearchHit]]:
        """Image -> image (``target="images"``) or image -> text (``"captions"``);
        image -> image gives one hit per key unless ``distinct_keys=False``."""
        index = self.images if target == "images" else self.captions
        if index is None:
            raise InputError("this index has no captions: image -> text is not available")
        tensors = []
        for path in paths:
            try:
                with Image.open(path) as image:
                    tensors.append(self.transform(image.convert("RGB")))
            except (OSError, ValueError) as err:
                raise InputError(f"{path}: not a readable image ({err})") from err
        model = self.model
        emb = model.encode_image(torch.stack(tensors).to(model_device(model))).float().cpu()
        if target == "images" and distinct_keys:
            return one_hit_per_key(index, emb, k)
        result = index.search(emb, k)
        return [self._hits(result, q) for q in range(len(paths))]
