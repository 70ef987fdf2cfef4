"""Data: datasets (built-in and user formats), text, transforms, samplers.

Every run reads data as splits (``CrossModalSplit`` / ``LabelledSplit``) from
``load_dataset(name, **options)``. Nothing is downloaded.
"""

from retrievalkit.data import (  # noqa: F401  (register the datasets)
    emoji,
    fashion_mnist,
    folders,
    karpathy,
    lists,
    pairs,
    precomp,
    synthetic,
)
from retrievalkit.data.datasets import (
    CaptionDataset,
    CaptionPairDataset,
    CrossModalBatch,
    ImageDataset,
    LabelledBatch,
    LabelledImageDataset,
    collate_labelled,
    collate_pairs,
)
from retrievalkit.data.errors import BadItems, DataError, OnError
from retrievalkit.data.registry import DATASETS, load_dataset, register_dataset
from retrievalkit.data.samplers import (
    CrossModalBatchSampler,
    PKBatchSampler,
    RandomBatchSampler,
    RankShareSampler,
)
from retrievalkit.data.splits import (
    ArrayImageSource,
    CrossModalSplit,
    FeatureSource,
    FileImageSource,
    ImageSource,
    LabelledSplit,
    grouped_captions_split,
)
from retrievalkit.data.text import (
    Vocabulary,
    pack_padded,
    pad_to_length,
    position_shift,
    tokenize,
)

__all__ = [
    "DATASETS",
    "ArrayImageSource",
    "BadItems",
    "CaptionDataset",
    "CaptionPairDataset",
    "CrossModalBatch",
    "CrossModalBatchSampler",
    "CrossModalSplit",
    "DataError",
    "FeatureSource",
    "FileImageSource",
    "ImageDataset",
    "ImageSource",
    "LabelledBatch",
    "LabelledImageDataset",
    "LabelledSplit",
    "OnError",
    "PKBatchSampler",
    "RandomBatchSampler",
    "RankShareSampler",
    "Vocabulary",
    "collate_labelled",
    "collate_pairs",
    "grouped_captions_split",
    "load_dataset",
    "pack_padded",
    "pad_to_length",
    "position_shift",
    "register_dataset",
    "tokenize",
]
