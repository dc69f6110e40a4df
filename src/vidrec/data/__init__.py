"""Data: the simulated platform's logs, their schemas, and the ground-truth oracle."""
