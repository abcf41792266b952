"""Benchmarks: ``python -m bench.<name>`` writes its table into BENCHMARKS.md."""

import quickdraw_tf  # noqa: F401  Before any benchmark imports TensorFlow: its oneDNN default (quickdraw_tf/__init__.py).
