"""Training: time splits, models and offline evaluation. Reads only training sets built by
`vidrec.features` (no side doors to raw logs) and, for evaluation only, the oracle."""
