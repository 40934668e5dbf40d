"""Crowd annotation backends (one module each) and vote aggregation."""
