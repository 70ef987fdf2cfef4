"""Karpathy split JSON (``dataset_coco.json``, ``dataset_flickr30k.json``, ``dataset_flickr8k.json``).

Format: ``{"images": [{"filepath"?: "val2014", "filename": "...jpg", "split":
"train"|"val"|"test"|"restval", "sentences": [{"raw": "..."}, ...], "imgid": 0,
"cocoid"?: 391895}, ...]}``. An image file is ``image_root/filepath/filename``
(``filepath`` is present for COCO only). The image key is that relative path.

``restval`` (default: True when the file has ``restval`` images, i.e. COCO) adds
the ``restval`` images to train: COCO train is then 113,287 images, else 82,783.
``expected_counts=True`` checks the standard split sizes of the file's dataset
(from its name or, failing that, from ``cocoid``) and raises a DataError naming the
file when they differ; a dict ``{"train": n, ...}`` checks other sizes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from retrievalkit.data.errors import BadItems, DataError, read_text_file
from retrievalkit.data.paths import RootResolver, check_image_file
from retrievalkit.data.registry import register_dataset
from retrievalkit.data.splits import CrossModalSplit, FileImageSource, grouped_captions_split

log = logging.getLogger(__name__)

STANDARD_COUNTS: dict[str, dict[str, int]] = {
    "coco": {"train": 113_287, "val": 5_000, "test": 5_000},
    "coco_no_restval": {"train": 82_783, "val": 5_000, "test": 5_000},
    "flickr30k": {"train": 29_000, "val": 1_014, "test": 1_000},
    "flickr8k": {"train": 6_000, "val": 1_000, "test": 1_000},
}
SPLITS = ("train", "val", "test", "restval")


def read_json(path: Path) -> Any:
    """Parse a JSON file; a syntax error names the file, line and column."""
    text = read_text_file(path, "a Karpathy split JSON file", "a UTF-8 JSON file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            path, f"malformed JSON: {err.msg}", "valid JSON", f"line {err.lineno}:{err.colno}"
        ) from None


def dataset_kind(path: Path, images: list[dict[str, Any]]) -> str:
    """ "coco", "flickr30k", "flickr8k" from the file name, else "coco" if ``cocoid`` appears."""
    name = path.name.lower()
    for kind in ("coco", "flickr30k", "flickr8k"):
        if kind in name:
            return kind
    return "coco" if any("cocoid" in image for image in images[:10]) else "unknown"


def _parse_image(
    record: Any, index: int, path: Path, resolve: RootResolver, check_files: bool, verify: bool
) -> tuple[str, str, Path, list[str]]:
    """One ``images[index]`` entry -> (split, key, file, captions); DataError if bad."""
    item = f"images[{index}]"
    if not isinstance(record, dict):
        raise DataError(path, f"{type(record).__name__} instead of an object", "an object", item)
    for field in ("filename", "split", "sentences"):
        if field not in record:
            raise DataError(path, f"field {field!r} is missing", "filename, split, sentences", item)
    split = record["split"]
    if split not in SPLITS:
        raise DataError(path, f"split {split!r}", "one of train, val, test, restval", item)
    relative = "/".join(p for p in (record.get("filepath", ""), record["filename"]) if p)
    file = resolve(relative, path, item)
    if check_files:
        check_image_file(file, path, item, verify)
    captions = []
    sentences = record["sentences"]
    if not isinstance(sentences, list) or not sentences:
        raise DataError(path, "no sentences", "a non-empty list of {'raw': ...}", item)
    for j, sentence in enumerate(sentences):
        raw = sentence.get("raw") if isinstance(sentence, dict) else None
        if not isinstance(raw, str) or not raw.strip():
            raise DataError(
                path, f"empty caption {raw!r}", "a non-empty 'raw' string", f"{item}.sentences[{j}]"
            )
        captions.append(raw.strip())
    return split, relative, file, captions


def _check_counts(path: Path, kind: str, restval: bool, counts: dict[str, int], expected: Any):
    if expected is True:
        key = kind if (kind != "coco" or restval) else "coco_no_restval"
        if key not in STANDARD_COUNTS:
            raise DataError(path, "cannot tell which dataset this is", "dataset_coco/flickr* name")
        expected = STANDARD_COUNTS[key]
    wrong = {s: (counts.get(s, 0), n) for s, n in expected.items() if counts.get(s, 0) != n}
    if wrong:
        detail = ", ".join(f"{s} has {got} images, expected {n}" for s, (got, n) in wrong.items())
        raise DataError(
            path, f"not the standard {kind} split (restval={restval}): {detail}", str(expected)
        )


@register_dataset("karpathy")
def load_karpathy(
    json_path: str | Path,
    image_root: str | Path,
    restval: bool | None = None,
    expected_counts: bool | dict[str, int] = False,
    check_files: bool = True,
    verify_images: bool = False,
    on_error: str = "raise",
) -> dict[str, CrossModalSplit]:
    """Splits ``train``/``val``/``test`` of a Karpathy JSON with images under ``image_root``.

    ``check_files`` checks every image exists (``verify_images`` also opens it);
    ``on_error="skip"`` leaves bad images out (logged with a count).
    """
    path, root = Path(json_path), Path(image_root)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(path, "no 'images' list at the top level", '{"images": [...]}')
    images = data["images"]
    kind = dataset_kind(path, images)
    has_restval = any(isinstance(r, dict) and r.get("split") == "restval" for r in images)
    restval = has_restval if restval is None else restval
    bad = BadItems(on_error, str(path))
    resolve = RootResolver(root)
    grouped: dict[str, list[tuple[str, Path, list[str]]]] = {s: [] for s in SPLITS}
    for index, record in enumerate(images):
        try:
            split, key, file, captions = _parse_image(
                record, index, path, resolve, check_files, verify_images
            )
        except DataError as err:
            bad.handle(err)
            continue
        grouped[split].append((key, file, captions))
    bad.report()
    if restval:
        grouped["train"] += grouped["restval"]
    counts = {s: len(grouped[s]) for s in ("train", "val", "test")}
    if expected_counts:
        _check_counts(path, kind, restval, counts, expected_counts)
    log.info("karpathy %s (%s, restval=%s): %s", path, kind, restval, counts)
    source = f"{path} + images under {root}"
    return {
        split: grouped_captions_split(
            f"{kind}/{split}",
            FileImageSource([file for _, file, _ in grouped[split]]),
            [key for key, _, _ in grouped[split]],
            [captions for _, _, captions in grouped[split]],
            source,
        )
        for split in ("train", "val", "test")
    }
