"""Shared fixtures: where the real QuickDraw data is, and small hand-written drawings."""

import os

import pytest

import quickdraw_tf


@pytest.fixture(scope="session")
def data_dir():
  """The shared QuickDraw data (QUICKDRAW_DATA, default ../shared/data/quickdraw)."""
  path = quickdraw_tf.DEFAULT_DATA_DIR
  if not os.path.isdir(os.path.join(path, "strokes")):
    pytest.skip(f"shared QuickDraw data not found at {path} (set QUICKDRAW_DATA)")
  return path
