"""Metrics and resampling shared by the outcome models."""
