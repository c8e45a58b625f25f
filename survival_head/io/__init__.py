"""Checkpoint I/O with checksums."""
