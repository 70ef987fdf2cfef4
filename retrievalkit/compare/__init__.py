"""Multi-run comparison: recipes x variants x seeds, trained, scored, summarized.

``plan``: which runs (a recipe, a variant of it, a seed) and where they live.
``execute``: train and score the runs not finished yet (resumable, one lock per run).
``stats``: the scores of a run's record, and mean ± sample std over seeds.
``report``: the results files (tables and chart under a provenance header), and the
records of run directories trained elsewhere.

``retrievalkit compare`` is the front end; benchmarks that aggregate runs use it too.
"""
