"""Pipelines as data: a YAML definition of steps, run locally or on a Ray cluster."""
