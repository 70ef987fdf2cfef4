"""What a run is made of, read by training and by everything that uses a trained model.

``config``: the recipe, parsed once into frozen dataclasses. ``checkpoint``: the
checkpoint directories (atomic writes, ``weights_only`` reads). ``device``: device
names as users type them (``auto``). ``env``: environment variables set for a
while. ``recipes``: the recipes shipped inside the package, found by name.
``provenance``: results files written atomically under a header (command, commit,
date, machine, seeds). Nothing here imports the trainer, so
serving or evaluating a model never does either.
"""
