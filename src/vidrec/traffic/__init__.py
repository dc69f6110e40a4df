"""Simulated users against a running endpoint: requests, outcomes, feedback (`vidrec traffic`)."""
