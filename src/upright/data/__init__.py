"""Datasets: sources (images + group ids), splits, and rotated sets."""
