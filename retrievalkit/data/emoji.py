"""Emoji image <-> text data from Debian packages (no download).

Images: every emoji of Noto Color Emoji (``fonts-noto-color-emoji``) rendered by
PIL at size 109 with embedded color, composited on white and resized to
``size`` x ``size`` RGB; cached as ``.npz`` after the first build.
Captions: CLDR annotations (``unicode-cldr-core``: ``annotations/<lang>.xml`` and
``annotationsDerived/<lang>.xml``): the short name ("tts") and the keywords,
as several captions per emoji (like COCO's five).

Conventions:
- Keys are CLDR's code point strings, which have U+FE0F removed; a key with
  FE0F and without is the same emoji (``normalize_key``).
- Skin-tone variants (U+1F3FB..U+1F3FF) are left out unless ``skin_tones=True``:
  they differ from their base emoji only in color.
- An annotation that the font has no glyph for (symbols such as ``{`` or ``→``)
  renders empty or as a plain outline and is skipped; ``info["skipped"]`` counts them.
- The split is by emoji (all captions of an emoji in one split), from a hash of
  the key without skin tones, so it is stable across machines and versions.
"""

from __future__ import annotations

import hashlib
import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrievalkit.data.errors import DataError
from retrievalkit.data.registry import register_dataset
from retrievalkit.data.splits import ArrayImageSource, CrossModalSplit

log = logging.getLogger(__name__)

FONT_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
CLDR_ROOT = Path("/usr/share/unicode/cldr/common")
SKIN_TONES = frozenset(chr(c) for c in range(0x1F3FB, 0x1F400))
RENDER_SIZE = 109  # the font's only bitmap strike
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
CACHE_VERSION = 1


def normalize_key(text: str) -> str:
    """The emoji key as CLDR writes it: without U+FE0F (emoji presentation selector)."""
    return text.replace("\ufe0f", "")


def default_cache_dir() -> Path:
    return Path(os.environ.get("RETRIEVALKIT_CACHE", Path.home() / ".cache" / "retrievalkit"))


@dataclass(frozen=True)
class EmojiAnnotation:
    key: str
    name: str
    keywords: tuple[str, ...]


def read_annotations(lang: str = "en", root: Path = CLDR_ROOT) -> list[EmojiAnnotation]:
    """Name and keywords per code point string, from CLDR (derived file second)."""
    names: dict[str, str] = {}
    keywords: dict[str, tuple[str, ...]] = {}
    files = [root / "annotations" / f"{lang}.xml", root / "annotationsDerived" / f"{lang}.xml"]
    if not files[0].exists():
        raise DataError(
            files[0],
            "CLDR annotations not found",
            "the Debian package unicode-cldr-core (apt-get install unicode-cldr-core)",
        )
    for path in files:
        if not path.exists():
            continue
        try:
            tree = ET.parse(path)
        except ET.ParseError as err:
            raise DataError(path, f"malformed XML ({err})", "a CLDR annotations file") from None
        for node in tree.getroot().iter("annotation"):
            key, text = node.get("cp"), (node.text or "").strip()
            if not key or not text or text == "↑↑↑":
                continue
            key = normalize_key(key)
            if node.get("type") == "tts":
                names.setdefault(key, text)
            else:
                keywords.setdefault(key, tuple(k.strip() for k in text.split("|") if k.strip()))
    return [EmojiAnnotation(k, names[k], keywords.get(k, ())) for k in names]


def captions_for(annotation: EmojiAnnotation, max_keyword_captions: int = 3) -> list[str]:
    """Several captions: the name, "name: keywords", and keyword phrases not in the name."""
    name = annotation.name
    captions = [name]
    if annotation.keywords:
        captions.append(f"{name}: {', '.join(annotation.keywords)}")
    extra = [k for k in annotation.keywords if k.lower() not in name.lower()]
    captions.extend(extra[:max_keyword_captions])
    return list(dict.fromkeys(captions))


def split_of(key: str) -> str:
    """ "train" / "val" / "test" from a hash of the key without skin tones."""
    base = "".join(ch for ch in key if ch not in SKIN_TONES)
    bucket = int(hashlib.sha1(base.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    train, val, _ = SPLIT_FRACTIONS
    return "train" if bucket < train else "val" if bucket < train + val else "test"


def _is_emoji_candidate(key: str, skin_tones: bool) -> bool:
    if not skin_tones and any(ch in SKIN_TONES for ch in key):
        return False
    if key in SKIN_TONES:
        return False  # the bare modifiers are color swatches
    return any(ord(ch) >= 0x2000 for ch in key)


def render(
    keys: list[str], size: int, font_path: Path = FONT_PATH
) -> tuple[np.ndarray, list[bool]]:
    """Render emoji -> uint8 ``[N, size, size, 3]`` on white, and which ones rendered.

    A key renders when the font gives it colored pixels (a missing glyph gives
    nothing or a monochrome outline).
    """
    from PIL import Image, ImageDraw, ImageFont

    if not font_path.exists():
        raise DataError(
            font_path,
            "emoji font not found",
            "the Debian package fonts-noto-color-emoji (apt-get install fonts-noto-color-emoji)",
        )
    font = ImageFont.truetype(str(font_path), RENDER_SIZE)
    canvas = 2 * RENDER_SIZE
    out = np.full((len(keys), size, size, 3), 255, dtype=np.uint8)
    ok: list[bool] = []
    for i, key in enumerate(keys):
        layer = Image.new("RGBA", (canvas, canvas), (255, 255, 255, 0))
        ImageDraw.Draw(layer).text(
            (canvas // 2, canvas // 2), key, font=font, embedded_color=True, anchor="mm"
        )
        box = layer.getbbox()
        rgba = np.asarray(layer)
        colored = (
            box is not None and float(np.ptp(rgba[..., :3][rgba[..., 3] > 0], axis=0).max()) > 40
        )
        if not colored:
            ok.append(False)
            continue
        left, top, right, bottom = box
        side = max(right - left, bottom - top)
        cx, cy = (left + right) // 2, (top + bottom) // 2
        square = layer.crop(
            (cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side)
        )
        white = Image.new("RGBA", square.size, (255, 255, 255, 255))
        image = (
            Image.alpha_composite(white, square).convert("RGB").resize((size, size), Image.LANCZOS)
        )
        out[i] = np.asarray(image)
        ok.append(True)
    return out, ok


def _cache_path(cache_dir: Path, keys: list[str], size: int, font_path: Path) -> Path:
    stat = font_path.stat()
    digest = hashlib.sha1(
        f"{CACHE_VERSION}|{size}|{stat.st_size}|{stat.st_mtime_ns}|{'|'.join(keys)}".encode()
    ).hexdigest()[:16]
    return cache_dir / f"emoji-{size}px-{digest}.npz"


def render_cached(
    keys: list[str], size: int, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``render`` with an on-disk cache; written atomically (temp file + rename)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = _cache_path(cache_dir, keys, size, FONT_PATH)
    if path.exists():
        try:
            with np.load(path) as data:
                return data["pixels"], data["ok"]
        except (OSError, KeyError, ValueError):
            log.warning("emoji cache %s is unreadable: rendering again", path)
    pixels, ok = render(keys, size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, pixels=pixels, ok=np.asarray(ok))
    os.replace(tmp, path)
    return pixels, np.asarray(ok)


@register_dataset("emoji")
def load_emoji(
    size: int = 64,
    lang: str = "en",
    skin_tones: bool = False,
    max_keyword_captions: int = 3,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, CrossModalSplit]:
    """Emoji splits ``train``/``val``/``test`` (about 80/10/10 % of the emoji).

    ``limit`` keeps the first N rendered emoji (for quick tests).
    """
    annotations = [a for a in read_annotations(lang) if _is_emoji_candidate(a.key, skin_tones)]
    keys = [a.key for a in annotations]
    pixels, ok = render_cached(keys, size, Path(cache_dir) if cache_dir else None)
    kept = [i for i, good in enumerate(ok) if good][:limit]
    log.info(
        "emoji: %d rendered, %d skipped (no color glyph in the font)",
        len(kept),
        len(keys) - len(kept),
    )
    source = f"{FONT_PATH} + {CLDR_ROOT}/annotations(Derived)/{lang}.xml"
    splits: dict[str, CrossModalSplit] = {}
    for split_name in ("train", "val", "test"):
        members = [i for i in kept if split_of(keys[i]) == split_name]
        captions: list[str] = []
        caption_image: list[int] = []
        for position, i in enumerate(members):
            for caption in captions_for(annotations[i], max_keyword_captions):
                captions.append(caption)
                caption_image.append(position)
        splits[split_name] = CrossModalSplit(
            name=f"emoji/{split_name}",
            images=ArrayImageSource(pixels[members]),
            image_keys=[keys[i] for i in members],
            captions=captions,
            caption_image=np.asarray(caption_image, dtype=np.int64),
            source=source,
        )
    return splits
