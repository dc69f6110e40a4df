"""The model registry: versioned bundles, the gates they must pass, and aliases.

Training produces one bundle directory per model (`bundle.py`); `gates.py`
decides, without I/O, whether it may be registered; `registry.py` is the
interface serving and rollout use to find "champion" and "challenger", and
`mlflow_registry.py` implements it on the MLflow Model Registry.
"""
