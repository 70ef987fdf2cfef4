"""The losses ``retrievalkit bench`` times, by name (no torch import: the CLI's
``--help`` lists them without loading the benchmark, :mod:`retrievalkit.losses.bench`)."""

METRIC_LOSSES = (
    "multi_similarity",
    "contrastive",
    "triplet_batch_hard",
    "lifted_generalized",
    "lifted",
    "binomial",
    "smooth_ap",
)
CROSS_MODAL_LOSSES = ("vse_mh", "vse_sh", "clip")
LOSS_NAMES = METRIC_LOSSES + CROSS_MODAL_LOSSES
