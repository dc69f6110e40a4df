"""Online serving: routing between model versions, business rules, metrics.

Never imports `vidrec.training`: what it runs comes from registry bundles
through `vidrec.models`.
"""
