"""Serving beyond the SavedModel of export.py: Sketch-RNN's signatures and TensorFlow Lite."""
