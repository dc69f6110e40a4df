"""Know when the model degrades: Prometheus rules, drift detection on served feature
histograms, and retraining on sustained drift. Never imports `serving`."""
