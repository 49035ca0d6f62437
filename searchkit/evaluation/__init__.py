"""Retrieval evaluation: BEIR datasets, metrics, and the runner that drives the API."""
