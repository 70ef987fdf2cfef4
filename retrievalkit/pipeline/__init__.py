"""Glue between recipes, data, models and evaluation, shared by the trainer and the CLI.

``build``: datasets, vocabulary and model from a config. ``embed``: embeddings of a
split. ``evaluate``: the one retrieval evaluator (validation, CLI, benchmarks).
"""
