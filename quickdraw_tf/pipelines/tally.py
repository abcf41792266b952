"""What a make_records run counts: skipped records by reason, drawings written, and the stats.json they give."""

import collections
import resource
import time

from absl import logging
import numpy as np

from quickdraw_tf.pipelines import records
from quickdraw_tf.pipelines.conversion import MakeRecordsError

# Skip reasons that are not bad input: --strict does not stop on them.
NOT_ERRORS = ("duplicate", "over_max_per_class", "other_category")
REPORTED_SKIPS = 5


class Skips:
  """Counts skipped records by reason and remembers the first few."""

  def __init__(self, strict):
    self.counts = collections.Counter()
    self.examples = []
    self.strict = strict

  def add_error(self, error):
    """Counts a `sources.SourceError`."""
    self.add(error.reason, error.path, error.line, error.message)

  def add(self, reason, path, line, message):
    self.counts[reason] += 1
    where = f"{path}:{line}" if line else path
    if reason not in NOT_ERRORS:
      if self.strict:
        raise MakeRecordsError(f"{where}: {message} [{reason}] (--strict)")
      if len(self.examples) < 20:
        self.examples.append({"reason": reason, "file": path, "line": line, "message": message})
      if sum(v for k, v in self.counts.items() if k not in NOT_ERRORS) <= REPORTED_SKIPS:
        logging.warning("skipped %s: %s [%s]", where, message, reason)



class Tally:
  """The drawings written, by split, class and ink length; and whether a class has its --max_per_class."""

  def __init__(self, num_classes, max_per_class):
    self.max_per_class = max_per_class  # 0: no limit.
    self.per_class = [0] * num_classes  # [class_index]
    self.counts = [[0] * num_classes for _ in records.SPLITS]  # [split code][class_index]
    self.lengths = collections.Counter()  # ink length -> drawings

  @property
  def written(self):
    return sum(self.per_class)

  def full(self, class_index):
    return bool(self.max_per_class) and self.per_class[class_index] >= self.max_per_class

  def add(self, split, class_index, ink_length):
    """Counts a drawing written; ``split`` is its code, an index into records.SPLITS."""
    self.per_class[class_index] += 1
    self.counts[split][class_index] += 1
    self.lengths[ink_length] += 1



def cpu_seconds():
  """User and system CPU seconds of this process and of its reaped children (the workers, once closed)."""
  own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def stats(plan, options, tally, skips, workers, started, shard_lengths):
  """The stats.json dict.

  Args:
    plan: the `plan.Plan` run.
    tally: the `Tally` of the drawings written.
    started: (wall seconds, CPU seconds) when `convert` began, after the
      imports; the workers must be closed, so that their CPU time counts.
    shard_lengths: split -> drawings per final shard.
  """
  elapsed = (time.time() - started[0], cpu_seconds() - started[1])
  counts = {split: dict(zip(plan.class_names, tally.counts[code])) for code, split in enumerate(records.SPLITS)}
  return {
      "classes": plan.class_names,
      "has_ink": plan.has_ink,
      "image_size": options.image_size,
      "totals": {split: sum(counts[split].values()) for split in records.SPLITS},
      "counts": counts,
      "ink_length_percentiles": percentiles(tally.lengths),
      "skipped": dict(sorted(skips.counts.items())),
      "skipped_examples": skips.examples,
      "inputs": [source.path for source in plan.sources],
      "options": {"eval_fraction": options.eval_fraction, "test_fraction": options.test_fraction,
                  "num_shards": dict(options.num_shards), "max_points": options.max_points},
      "workers": workers,
      "seconds": round(elapsed[0], 2),  # after imports: scan, conversion, writing
      "cpu_seconds": round(elapsed[1], 2),  # the same span, this process and its workers
      "drawings_per_second": round(tally.written / max(elapsed[0], 1e-9), 1),
      "shard_lengths": shard_lengths,
      "files_left_out": plan.left_out,
  }


def percentiles(lengths):
  """{'p50': ..., 'p90': ..., 'p95': ..., 'p99': ..., 'max': ...} of ``lengths`` (value -> count); {} if empty."""
  if not lengths:
    return {}
  values = np.array(sorted(lengths))
  cumulative = np.cumsum([lengths[v] for v in values]) / sum(lengths.values())
  percentiles = {f"p{p}": int(values[np.searchsorted(cumulative, p / 100.0)]) for p in (50, 90, 95, 99)}
  percentiles["max"] = int(values[-1])
  return percentiles
