"""The emoji datasets: one dataset made of three parts.

``noto``: CLDR captions and the Noto Color Emoji font renders (Debian packages).
``styles``: the other art styles (Twemoji, OpenMoji, Fluent SVG sets from npm).
``dataset``: the ``emoji`` (image <-> text) and ``emoji_id`` (metric learning)
datasets built from them, registered on import.
"""

from retrievalkit.data.emoji import dataset  # noqa: F401  (registers emoji, emoji_id)
