"""Our training step on random inputs, as bench/torch_step.py and bench/onednn.py measure it."""

import time

import keras
import numpy as np

from quickdraw_tf import models

BATCH = 64
CLASSES = 17


def random_batch(name, points, side, rng):
  """Ours and PyTorch's inputs of one batch, and its labels."""
  spec = models.get(name)
  ink = rng.normal(size=(BATCH, points or 1, spec.ink_channels or 3)).astype("float32")
  image = rng.uniform(size=(BATCH, side or 1, side or 1, 1)).astype("float32")
  ours = {}
  if spec.uses_ink:
    # Bucketed batches: the longest drawing fills the batch, the others between half and all of it.
    ours.update(ink=ink, ink_length=np.r_[points, rng.integers(points // 2, points + 1, BATCH - 1)].astype("int32"))
  if spec.uses_image:
    ours["image"] = image
  return ours, (ink, image.transpose(0, 3, 1, 2).copy()), rng.integers(0, CLASSES, BATCH)


def our_step(name, side, batch, labels):
  """A function running one training step of ``name`` (Keras' ``train_on_batch``) on ``batch``."""
  model = models.build(name, CLASSES, image_size=side or None)
  model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return lambda: model.train_on_batch(batch, labels)


def examples_per_cpu_second(step, seconds):
  """Examples per CPU second of ``step`` (a batch of `BATCH`), run for at least ``seconds`` CPU s and 2 steps."""
  steps, started = 0, time.process_time()
  while steps < 2 or time.process_time() - started < seconds:
    step()
    steps += 1
  return steps * BATCH / (time.process_time() - started)
