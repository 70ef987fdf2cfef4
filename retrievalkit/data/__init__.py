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
from retrievalkit.data.errors import BadItems, DataError
from retrievalkit.data.registry import DATASETS, load_dataset, register_dataset
from retrievalkit.data.samplers import CrossModalBatchSampler, PKBatchSampler, RandomBatchSampler
from retrievalkit.data.splits import (
    ArrayImageSource,
    CrossModalSplit,
    FeatureSource,
    FileImageSource,
    ImageSource,
    LabelledSplit,
)
from retrievalkit.data.text import Vocabulary, position_shift, tokenize

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
    "PKBatchSampler",
    "RandomBatchSampler",
    "Vocabulary",
    "collate_labelled",
    "collate_pairs",
    "load_dataset",
    "position_shift",
    "register_dataset",
    "tokenize",
]
