"""Features: declared once (`definitions.py`), joined point-in-time offline (`pit.py`,
`training_set.py`), materialised and served online (`materialize.py`, `online.py`), with a
leakage guard (`guard.py`) and a skew check (`skew.py`) proving the two paths agree."""
