"""Generic image-caption pairs from JSONL or CSV files.

One row per (image, caption): ``{"image": "dogs/1.jpg", "caption": "a dog", "id":
"d1"}`` per JSONL line, or a CSV with a header holding ``image`` and ``caption``
(and optionally ``id`` and ``split``). Image paths are relative to ``root``;
absolute paths, ``..`` and symlinks out of ``root`` are refused. Rows of the same
image (same ``id``, or same path without ids) make one image with several
captions; its key is the ``id`` or else the relative path.

Splits: ``path`` is one file (rows go to their ``split`` column, else to
``default_split``) or a mapping ``{"train": file, "test": file, ...}``.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from retrievalkit.data.errors import BadItems, DataError, read_text_file
from retrievalkit.data.paths import RootResolver, check_image_file
from retrievalkit.data.registry import register_dataset
from retrievalkit.data.splits import CrossModalSplit, FileImageSource, grouped_captions_split

log = logging.getLogger(__name__)

Row = tuple[str, dict[str, Any]]  # (where: "line N", fields)


def _jsonl_rows(path: Path, text: str, bad: BadItems) -> Iterator[Row]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            bad.handle(
                DataError(
                    path, f"malformed JSON: {err.msg}", "one JSON object per line", f"line {number}"
                )
            )
            continue
        if not isinstance(row, dict):
            bad.handle(
                DataError(
                    path,
                    f"{type(row).__name__} instead of an object",
                    '{"image": ..., "caption": ...}',
                    f"line {number}",
                )
            )
            continue
        yield f"line {number}", row


def _csv_rows(path: Path, text: str, bad: BadItems) -> Iterator[Row]:
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        raise DataError(path, "empty file", "a header row with image,caption", "line 1")
    header = [h.strip() for h in header]
    missing = {"image", "caption"} - set(header)
    if missing:
        raise DataError(
            path,
            f"header {header} lacks {sorted(missing)}",
            "columns image,caption[,id][,split]",
            "line 1",
        )
    for values in reader:
        number = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            bad.handle(
                DataError(
                    path,
                    f"{len(values)} fields",
                    f"{len(header)} fields as in the header {header}",
                    f"line {number}",
                )
            )
            continue
        yield f"line {number}", dict(zip(header, values, strict=True))


def read_pair_rows(path: Path, bad: BadItems) -> Iterator[Row]:
    """Rows of a ``.jsonl`` / ``.csv`` file (by suffix; ``.tsv`` is tab-separated CSV)."""
    text = read_text_file(path, "a JSONL or CSV pairs file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return _jsonl_rows(path, text, bad)
    if suffix == ".csv":
        return _csv_rows(path, text, bad)
    raise DataError(path, f"unknown suffix {suffix!r}", ".jsonl or .csv")


def _check_row(
    path: Path, where: str, row: dict[str, Any], resolve: RootResolver, check: bool, verify: bool
) -> tuple[str, Path, str]:
    image, caption = row.get("image"), row.get("caption")
    if not isinstance(caption, str) or not caption.strip():
        raise DataError(path, f"empty caption {caption!r}", "a non-empty 'caption'", where)
    file = resolve(image, path, where)
    if check:
        check_image_file(file, path, where, verify)
    ident = row.get("id")
    key = str(ident) if ident not in (None, "") else str(image)
    return key, file, caption.strip()


@register_dataset("pairs")
def load_pairs(
    path: str | Path | Mapping[str, str | Path],
    root: str | Path,
    default_split: str = "train",
    check_files: bool = True,
    verify_images: bool = False,
    on_error: str = "raise",
) -> dict[str, CrossModalSplit]:
    """Cross-modal splits from pairs files with images under ``root``."""
    root = Path(root)
    files = (
        {None: Path(path)}
        if isinstance(path, (str, Path))
        else {k: Path(v) for k, v in path.items()}
    )
    resolve = RootResolver(root)
    groups: dict[str, dict[str, tuple[Path, list[str]]]] = {}
    for forced_split, file in files.items():
        bad = BadItems(on_error, str(file))
        for where, row in read_pair_rows(file, bad):
            try:
                key, image, caption = _check_row(
                    file, where, row, resolve, check_files, verify_images
                )
            except DataError as err:
                bad.handle(err)
                continue
            split = forced_split or str(row.get("split") or default_split)
            entry = groups.setdefault(split, {}).setdefault(key, (image, []))
            if entry[0] != image:
                bad.handle(
                    DataError(
                        file,
                        f"id {key!r} names two images ({entry[0]} and {image})",
                        "one image per id",
                        where,
                    )
                )
                continue
            entry[1].append(caption)
        bad.report()
    if not groups:
        raise DataError(
            next(iter(files.values())), "no usable pairs", "rows with image and caption"
        )
    source = f"{', '.join(str(f) for f in files.values())} + images under {root}"
    return {
        split: grouped_captions_split(
            f"pairs/{split}",
            FileImageSource([image for image, _ in members.values()]),
            list(members),
            [captions for _, captions in members.values()],
            source,
        )
        for split, members in groups.items()
    }
