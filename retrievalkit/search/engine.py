"""Search an index directory: text -> image, image -> image, image -> text.

:class:`SearchEngine` opens a directory written by
:func:`~retrievalkit.search.index_dir.build_index_dir` once and answers queries with
its own model; the CLI, the Python API and the HTTP service all use it. Images
sharing a key (an emoji in several styles) are one result: searches return one hit
per key, its best-scoring image (``distinct_keys=False``: every image).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

import torch

from retrievalkit.errors import InputError, MissingFileError
from retrievalkit.models.tower import image_input_of
from retrievalkit.pipeline.build import model_transform
from retrievalkit.pipeline.embed import embed_captions, model_device
from retrievalkit.pipeline.images import ImageLike, as_list, is_one_image, stack
from retrievalkit.pipeline.load import LoadedModel, load_model
from retrievalkit.run.checkpoint import MODEL_FILE
from retrievalkit.run.files import file_sha256
from retrievalkit.search.index_dir import MANIFEST
from retrievalkit.search.ranking import (
    DEFAULT_IMAGE_WEIGHT,
    SearchHit,
    best_by_key,
    fuse,
    one_hit_per_key,
    result_hits,
)

__all__ = ["DEFAULT_IMAGE_WEIGHT", "MANIFEST", "SearchEngine", "SearchHit"]


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
        # the image tower's declared input (side, normalization), as index build used
        self.transform = model_transform(self.loaded.model, self.loaded.config.data, train=False)
        self.image_mode = "L" if image_input_of(self.loaded.model).channels == 1 else "RGB"
        self._image_metadata: dict[str, Any] = {}
        for key, meta in zip(self.images.keys, self.images.metadata, strict=True):
            self._image_metadata.setdefault(key, meta)

    def _check_same_model(self) -> None:
        """The indexes hold this model's embeddings (same file, same dimension)."""
        model_file = self.directory / "model" / MODEL_FILE
        recorded = self.manifest.get("model_sha256")  # indexes built before have none
        if recorded is not None and recorded != file_sha256(model_file):
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

    @overload
    def search_text(
        self,
        queries: str,
        k: int = 10,
        mode: str = "fused",
        image_weight: float = DEFAULT_IMAGE_WEIGHT,
        distinct_keys: bool = True,
    ) -> list[SearchHit]: ...

    @overload
    def search_text(
        self,
        queries: Sequence[str],
        k: int = 10,
        mode: str = "fused",
        image_weight: float = DEFAULT_IMAGE_WEIGHT,
        distinct_keys: bool = True,
    ) -> list[list[SearchHit]]: ...

    def search_text(
        self,
        queries: str | Sequence[str],
        k: int = 10,
        mode: str = "fused",
        image_weight: float = DEFAULT_IMAGE_WEIGHT,
        distinct_keys: bool = True,
    ) -> list[SearchHit] | list[list[SearchHit]]:
        """Text -> image: the ``k`` best items for each text query. One query (a
        string) gives its list of hits; a list of queries, one list per query.

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
        if isinstance(queries, str):
            return self.search_text([queries], k, mode, image_weight, distinct_keys)[0]
        return self._search_texts(list(queries), k, mode, image_weight, distinct_keys)

    @torch.no_grad()
    def _search_texts(
        self, queries: list[str], k: int, mode: str, image_weight: float, distinct_keys: bool
    ) -> list[list[SearchHit]]:
        if not self.model.has_text:
            raise InputError("this index was built from a metric-learning model: no text queries")
        if mode not in ("fused", "image"):
            raise InputError(f"mode must be 'fused' or 'image', got {mode!r}")
        for position, query in enumerate(queries):
            if not isinstance(query, str):
                raise InputError(f"query {position}: expected text, got {type(query).__name__}")
            if not query.strip():
                raise InputError(f"query {position}: empty (expected some text)")
        emb = embed_captions(self.model.encode_text, queries)
        if (mode == "image" or self.captions is None) and distinct_keys:
            return one_hit_per_key(self.images, emb, k)
        if mode == "image" or self.captions is None:
            result = self.images.search(emb, k)
            return [result_hits(result, q) for q in range(len(queries))]
        depth = max(20 * k, 200)
        image_side = best_by_key(self.images, emb, depth)
        caption_side = best_by_key(self.captions, emb, 5 * depth)
        return [
            [
                self._hit_for_key(rank, score, key, meta)
                for rank, (key, score, meta) in enumerate(ranked, start=1)
            ]
            for ranked in fuse(image_side, caption_side, k, image_weight)
        ]

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
        images: ImageLike | Sequence[ImageLike],
        k: int = 10,
        target: str = "images",
        distinct_keys: bool = True,
    ) -> list[SearchHit] | list[list[SearchHit]]:
        """Image -> image (``target="images"``) or image -> text (``"captions"``);
        image -> image gives one hit per key unless ``distinct_keys=False``.

        ``images``: one image (a path, PIL image, numpy array ``[H, W(, C)]`` or a
        preprocessed tensor ``[C, H, W]``), which gives its list of hits, or a list
        of them (an array ``[N, H, W(, C)]``, a tensor ``[N, C, H, W]``), one list
        per image."""
        if target not in ("images", "captions"):
            raise InputError(f"target must be 'images' or 'captions', got {target!r}")
        index = self.images if target == "images" else self.captions
        if index is None:
            raise InputError("this index has no captions: image -> text is not available")
        one = is_one_image(images)
        batch = stack(as_list(images), self.transform, self.image_mode)
        model = self.model
        emb = model.encode_image(batch.to(model_device(model))).float().cpu()
        if target == "images" and distinct_keys:
            hits = one_hit_per_key(index, emb, k)
        else:
            result = index.search(emb, k)
            hits = [result_hits(result, q) for q in range(emb.shape[0])]
        return hits[0] if one else hits
