"""Embeddings of a large collection in shards that several processes write.

``retrievalkit embed RUN --shard i/N --out DIR`` embeds part ``i`` (0-based) of
``N`` of the items an index would hold (every distinct image of the splits, and
their captions): rows ``[n i / N, n (i + 1) / N)`` of each side. Each process
writes one directory ``DIR/shard-0000i-of-0000N/`` holding per side
(``images``, ``captions``) ``SIDE.npy`` (float32 ``[n_i, D]``) and ``SIDE.jsonl``
(``{"key", "metadata"}`` per row), and ``shard.json`` (the shard's place, the
sides' first row, count, dim and total). A shard is written to a temporary
directory and renamed, so a shard directory present is complete; no process
writes a shared file.

:func:`iter_shards` reads them back one shard at a time (vectors memory-mapped),
in row order, after checking that all ``N`` shards are there and agree; index
building adds them shard by shard (Milvus: upsert with the global row ids, so
loading a shard twice does not duplicate it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SHARD_FILE = "shard.json"
FORMAT_VERSION = 1
_SHARD_DIR = re.compile(r"^shard-(\d+)-of-(\d+)$")


class ShardError(ValueError):
    """A bad ``--shard`` value or an incomplete / inconsistent shard directory."""


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        """``"i/N"`` with ``0 <= i < N``."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match or not 0 <= int(match[1]) < int(match[2]):
            raise ShardError(f"--shard {text!r}: expected i/N with 0 <= i < N, e.g. 0/4")
        return cls(int(match[1]), int(match[2]))

    def rows(self, total: int) -> range:
        """This shard's rows of ``total``: contiguous, sizes differing by at most one."""
        return range(total * self.index // self.count, total * (self.index + 1) // self.count)

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}-of-{self.count:05d}"


@dataclass(frozen=True)
class SidePart:
    """One side's rows in a shard: ``vectors [n, D]`` starting at global row ``start``
    of ``total``, with a key and metadata per row."""

    name: str
    vectors: np.ndarray
    keys: list[str]
    metadata: list[dict[str, Any] | None]
    start: int
    total: int


def write_shard(directory: Path, spec: ShardSpec, parts: list[SidePart], info: dict) -> Path:
    """Write one shard under ``directory`` (temp dir + rename); ``info``: recipe etc."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / spec.name
    tmp = directory / f".{spec.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    sides = {}
    for part in parts:
        if part.vectors.ndim != 2 or len(part.keys) != part.vectors.shape[0]:
            raise ShardError(f"{part.name}: {part.vectors.shape} vectors, {len(part.keys)} keys")
        np.save(tmp / f"{part.name}.npy", np.ascontiguousarray(part.vectors, dtype=np.float32))
        lines = (
            json.dumps({"key": k, "metadata": m}, ensure_ascii=False) + "\n"
            for k, m in zip(part.keys, part.metadata, strict=True)
        )
        (tmp / f"{part.name}.jsonl").write_text("".join(lines), encoding="utf-8")
        sides[part.name] = {
            "start": part.start,
            "count": len(part.keys),
            "dim": int(part.vectors.shape[1]),
            "total": part.total,
        }
    manifest = {
        "format": FORMAT_VERSION,
        "shard": spec.index,
        "num_shards": spec.count,
        **info,
        "sides": sides,
    }
    (tmp / SHARD_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if final.exists():  # re-running a shard replaces it
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / SHARD_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShardError(f"{path / SHARD_FILE}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ShardError(f"{path / SHARD_FILE}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise ShardError(f"{path / SHARD_FILE}: not a format-{FORMAT_VERSION} shard manifest")
    for field in ("shard", "num_shards", "sides"):
        if field not in manifest:
            raise ShardError(f"{path / SHARD_FILE}: missing field {field!r}")
    return manifest


def open_shards(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every shard of ``directory`` with its manifest, in shard order, after checking
    that all are present, agree (count, recipe, sides, dims) and tile the rows."""
    found = (
        sorted(p for p in directory.iterdir() if _SHARD_DIR.match(p.name))
        if directory.is_dir()
        else []
    )
    if not found:
        raise ShardError(
            f"{directory}: no shard-*-of-* directories (write them with embed --shard)"
        )
    shards = [(path, _read_manifest(path)) for path in found]
    first = shards[0][1]
    total = first["num_shards"]
    for path, manifest in shards:
        for field in ("num_shards", "recipe", "splits"):
            if manifest.get(field) != first.get(field):
                raise ShardError(
                    f"{path / SHARD_FILE}: {field} {manifest.get(field)!r}, "
                    f"{found[0].name} has {first.get(field)!r}"
                )
        if set(manifest["sides"]) != set(first["sides"]):
            raise ShardError(f"{path / SHARD_FILE}: sides {sorted(manifest['sides'])} differ")
    indices = sorted(m["shard"] for _, m in shards)
    if indices != list(range(total)):
        missing = sorted(set(range(total)) - set(indices))
        raise ShardError(f"{directory}: {len(shards)} of {total} shards; missing {missing}")
    shards.sort(key=lambda item: item[1]["shard"])
    for side in first["sides"]:
        expected_start = 0
        for path, manifest in shards:
            info = manifest["sides"][side]
            if info["start"] != expected_start or info["dim"] != first["sides"][side]["dim"]:
                raise ShardError(
                    f"{path / SHARD_FILE}: {side} starts at row {info['start']} with dim "
                    f"{info['dim']}, expected row {expected_start} and dim "
                    f"{first['sides'][side]['dim']}"
                )
            expected_start += info["count"]
        if expected_start != first["sides"][side]["total"]:
            raise ShardError(f"{directory}: {side} rows sum to {expected_start}, not the total")
    return shards


def iter_side(directory: Path, side: str) -> Iterator[SidePart]:
    """One side's rows shard by shard (vectors memory-mapped), in global row order."""
    for path, manifest in open_shards(directory):
        if side not in manifest["sides"]:
            raise ShardError(f"{path}: no {side!r} side (has {sorted(manifest['sides'])})")
        info = manifest["sides"][side]
        vectors = np.load(path / f"{side}.npy", mmap_mode="r")
        if vectors.shape != (info["count"], info["dim"]):
            raise ShardError(
                f"{path / (side + '.npy')}: shape {vectors.shape}, manifest says "
                f"{(info['count'], info['dim'])}"
            )
        keys, metadata = [], []
        text = (path / f"{side}.jsonl").read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), start=1):
            try:
                item = json.loads(line)
                keys.append(str(item["key"]))
                metadata.append(item.get("metadata"))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ShardError(f"{path / (side + '.jsonl')}:{number}: bad line ({err})") from None
        if len(keys) != info["count"]:
            raise ShardError(
                f"{path / (side + '.jsonl')}: {len(keys)} rows, expected {info['count']}"
            )
        yield SidePart(side, vectors, keys, metadata, info["start"], info["total"])
