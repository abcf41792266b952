"""Drawings: their formats, the tutorial's preprocessing, images, augmentation, and where they come from."""
