"""The converged runs' stopping rule, shared by bench.accuracy (ours) and bench.torch_accuracy (the originals).

A run evaluates on the eval split every `eval_period` steps and stops when
its eval top-1 has not improved for `PATIENCE` evaluations (as Keras'
``EarlyStopping("val_accuracy", patience)``: strictly better counts), or
when it has spent `CAP` CPU seconds of its training process.

Why evaluate every max(one pass, `EVAL_STEPS`) steps on small data: an epoch
of vec17 is 106 steps of 64, so a schedule and a stopping rule that count
epochs act after a few hundred steps. bilstm on vec17 evaluated every 500
steps instead of every epoch went from 0.3499 to 0.5585 test top-1
(BENCHMARKS.md, converged variants; chosen on its eval top-1, 0.3575 ->
0.5596), hence 500.
"""

PATIENCE = 3  # Evaluations without a better eval top-1.
CAP = 3600.0  # CPU seconds of a training process at most.
EVAL_STEPS = 500  # Steps between evaluations at least, where one pass over the training split is shorter.


def one_pass(train_count, batch_size):
  """Steps of one pass over ``train_count`` training examples (the last partial batch dropped; at least 1)."""
  return max(1, train_count // batch_size)


def eval_period(train_count, batch_size, min_steps=EVAL_STEPS):
  """Steps between evaluations: max(one pass, ``min_steps``); ``min_steps`` 0 gives one pass."""
  return max(one_pass(train_count, batch_size), min_steps)


class Stall:
  """Counts evaluations since the best eval top-1, as Keras' EarlyStopping(mode="max", min_delta=0).

  ``add(top1)`` returns True when this evaluation is a new best; ``stalled``
  is True once ``patience`` evaluations in a row brought none.
  """

  def __init__(self, patience=PATIENCE, best=None, wait=0):
    self.patience, self.best, self.wait = patience, best, wait

  def add(self, top1):
    if self.best is None or top1 > self.best:
      self.best, self.wait = top1, 0
      return True
    self.wait += 1
    return False

  @property
  def stalled(self):
    return self.wait >= self.patience

  def state(self):
    """A JSON-ready dict that ``Stall(**state)`` restores."""
    return {"patience": self.patience, "best": self.best, "wait": self.wait}
