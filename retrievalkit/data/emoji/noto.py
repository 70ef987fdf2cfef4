"""Emoji from Debian packages (no download): CLDR captions and the Noto font renders.

The ``emoji`` and ``emoji_id`` datasets (with the other art styles) are built in
``retrievalkit.data.emoji.dataset`` from these parts.

Images: every emoji of Noto Color Emoji (``fonts-noto-color-emoji``) rendered by
PIL at size 109 with embedded color, cropped to a square around the glyph,
composited on white and resized to ``size`` x ``size`` RGB; cached as ``.npz``
in ``$RETRIEVALKIT_CACHE`` (default ``~/.cache/retrievalkit``) after the first
build (about 9 s for the default set, 17 s with skin tones at 128 px, measured
on a busy 2-core machine).
Captions: CLDR annotations (``unicode-cldr-core``: ``annotations/<lang>.xml`` and
``annotationsDerived/<lang>.xml``), several per emoji like COCO's five: the
short name ("tts"), ``"<name>: kw1, kw2, ..."``, and up to 3 keyword phrases that
are not part of the name (2 to 5 captions per emoji in en, de, ja).

Conventions:
- Keys are CLDR's code point strings, which have U+FE0F removed; a key with
  FE0F and without is the same emoji (``normalize_key``).
- Skin-tone variants (U+1F3FB..U+1F3FF, 1,775 of CLDR's en annotations) are
  left out unless ``skin_tones=True``: each is its base emoji recolored, with
  captions that differ only by "medium skin tone" etc., so in retrieval they are
  near-duplicate images counted as negatives. The bare modifiers are never kept.
- Every other annotated string is tried; the font decides. A string is skipped
  when the font has no glyph for it: it renders nothing (this font's .notdef is
  empty), the same pixels as .notdef, or more than one glyph wide (a sequence
  the font lacks, drawn as its parts). With Debian's Noto Color Emoji and CLDR
  (measured here): 2,242 tried, 1,855 rendered by default; with skin tones 4,017
  tried, 3,630 rendered; the 387 skipped are punctuation and symbols such as
  ``‽``, ``→``. The counts are logged and written into the splits' ``source``.
- The split is by emoji (all captions of an emoji in one split), from a hash of
  the key without skin tones, so it is stable across machines and versions and a
  skin-tone variant always lands in its base emoji's split.
"""

from __future__ import annotations

import hashlib
import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrievalkit.data.emoji.render_cache import load_or_render
from retrievalkit.data.errors import DataError

log = logging.getLogger(__name__)

FONT_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
CLDR_ROOT = Path("/usr/share/unicode/cldr/common")
SKIN_TONES = frozenset(chr(c) for c in range(0x1F3FB, 0x1F400))
RENDER_SIZE = 109  # the font's only bitmap strike
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
CACHE_VERSION = 2


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


def is_candidate(key: str, skin_tones: bool) -> bool:
    """Whether to try rendering ``key``: not a bare skin-tone modifier, and no skin
    tone at all unless ``skin_tones``."""
    if key in SKIN_TONES:
        return False
    return skin_tones or not any(ch in SKIN_TONES for ch in key)


def _draw(key: str, font: object) -> object:
    """``key`` drawn centred on a transparent ``2*109`` square (RGBA)."""
    from PIL import Image, ImageDraw

    canvas = 2 * RENDER_SIZE
    layer = Image.new("RGBA", (canvas, canvas), (255, 255, 255, 0))
    ImageDraw.Draw(layer).text(
        (canvas // 2, canvas // 2), key, font=font, embedded_color=True, anchor="mm"
    )
    return layer


def to_square(layer: object, size: int) -> np.ndarray:
    """Crop the drawn pixels to a centred square, composite on white, resize."""
    from PIL import Image

    left, top, right, bottom = layer.getbbox()
    side = max(right - left, bottom - top)
    x0, y0 = (left + right - side) // 2, (top + bottom - side) // 2
    square = layer.crop((x0, y0, x0 + side, y0 + side))
    white = Image.new("RGBA", square.size, (255, 255, 255, 255))
    image = Image.alpha_composite(white, square).convert("RGB")
    return np.asarray(image.resize((size, size), Image.LANCZOS))


def render(
    keys: list[str], size: int, font_path: Path = FONT_PATH
) -> tuple[np.ndarray, list[bool]]:
    """Render emoji -> uint8 ``[N, size, size, 3]`` on white, and which ones rendered.

    A key is skipped (``False``, its image left white) when the font has no single
    glyph for it: nothing drawn, the .notdef glyph drawn, or a width of more than
    one glyph (a sequence drawn as its parts).
    """
    from PIL import ImageFont

    if not font_path.exists():
        raise DataError(
            font_path,
            "emoji font not found",
            "the Debian package fonts-noto-color-emoji (apt-get install fonts-noto-color-emoji)",
        )
    font = ImageFont.truetype(str(font_path), RENDER_SIZE)
    notdef = _draw("\U0010fffd", font)  # a private-use code point: never in the font
    notdef_pixels = np.asarray(notdef) if notdef.getbbox() is not None else None
    one_glyph = font.getlength("\U0001f600")
    out = np.full((len(keys), size, size, 3), 255, dtype=np.uint8)
    ok: list[bool] = []
    for i, key in enumerate(keys):
        layer = _draw(key, font)
        good = (
            layer.getbbox() is not None
            and font.getlength(key) < 1.5 * one_glyph
            and not (notdef_pixels is not None and np.array_equal(np.asarray(layer), notdef_pixels))
        )
        if good:
            out[i] = to_square(layer, size)
        ok.append(good)
    return out, ok


def _cache_path(cache_dir: Path, keys: list[str], size: int, font_path: Path) -> Path:
    stat = font_path.stat()
    digest = hashlib.sha1(
        f"{CACHE_VERSION}|{size}|{stat.st_size}|{stat.st_mtime_ns}|{'|'.join(keys)}".encode()
    ).hexdigest()[:16]
    return cache_dir / f"emoji-{size}px-{digest}.npz"


def render_cached(
    keys: list[str], size: int, cache_dir: Path | None = None, font_path: Path = FONT_PATH
) -> tuple[np.ndarray, np.ndarray]:
    """``render`` with an on-disk cache (``.npz`` keyed by the keys, size and font
    file); written atomically (unique temp file + rename), so parallel runs are safe."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = _cache_path(cache_dir, keys, size, font_path)
    return load_or_render(path, lambda: render(keys, size, font_path))


def render_noto(
    keys: list[str], size: int, limit: int | None, cache_dir: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """Images of ``keys``; with ``limit``, of the shortest prefix with ``limit`` rendered.

    A limited render uses the full cache when it exists, else renders in chunks
    (without caching: it is small).
    """
    if (
        limit is None
        or _cache_path(cache_dir or default_cache_dir(), keys, size, FONT_PATH).exists()
    ):
        pixels, ok = render_cached(keys, size, cache_dir)
    else:
        chunks, oks, start = [], [], 0
        while start < len(keys) and sum(oks) < limit:
            chunk, chunk_ok = render(keys[start : start + 2 * limit], size)
            chunks.append(chunk)
            oks.extend(chunk_ok)
            start += 2 * limit
        pixels, ok = np.concatenate(chunks or [np.zeros((0, size, size, 3), np.uint8)]), oks
    ok = np.asarray(ok, dtype=bool)
    if limit is not None:
        end = int(np.flatnonzero(ok)[limit - 1]) + 1 if ok.sum() >= limit else len(ok)
        pixels, ok = pixels[:end], ok[:end]
    return pixels, ok
