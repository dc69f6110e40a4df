"""Model artefacts shared by training (which fits them) and serving (which loads them).

Nothing here trains or reads logs: towers' inference, the ANN index and the
ranker scorer, so serving never imports `vidrec.training`.
"""
