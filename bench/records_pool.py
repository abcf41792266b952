r"""make_records' own worker pool against the standard library's, side by side.

  python -m bench.records_pool [--trials=3] [--repeats=32] [--data_dir=../shared/data/quickdraw]

Converts the same input with `pipelines.workers.Workers` (forked processes fed
through pipes, results read back in turn), with `multiprocessing.Pool.imap`
and with `concurrent.futures.ProcessPoolExecutor` (a window of 2 chunks a
worker in flight, as the own pool keeps), each swapped in for
`workers.Workers` in an otherwise unchanged `python -m quickdraw_tf.make_records`
run with all cores. Two inputs: the README's (`--input=<data_dir>/strokes`)
and the 685k-drawing one of `bench.make_records` (the simplified drawings
written `repeats` times, every copy unique). Trials run in turn (own, Pool,
futures, own, ...); the fastest conversion of each is reported with its CPU
time and the largest summed PSS of its process tree.
"""

import collections
import concurrent.futures
import functools
import json
import multiprocessing
import os
import sys
import tempfile

from absl import app
from absl import flags

from bench import report
from quickdraw_tf.drawings import sources

# --trials, --repeats (0: the README input only) and --data_dir are bench.make_records' flags, defined by its
# import under __main__ below: not at this module's import, which the measured runs make.
FLAGS = flags.FLAGS


def _apply(function, item):
  return function(item) if isinstance(item, sources.Chunk) else item


class PoolWorkers:
  """`workers.Workers` on `multiprocessing.Pool.imap` (fork, one chunk a task)."""

  def __init__(self, count, function, initializer, initargs=()):
    self._pool = multiprocessing.get_context("fork").Pool(count, initializer, initargs)
    self._apply = functools.partial(_apply, function)

  def imap(self, stream):
    return self._pool.imap(self._apply, stream)

  def close(self, wait=True):
    if wait:
      self._pool.close()
    else:
      self._pool.terminate()
    self._pool.join()


class FuturesWorkers:
  """`workers.Workers` on `concurrent.futures.ProcessPoolExecutor`, at most 2 chunks a worker in flight."""

  def __init__(self, count, function, initializer, initargs=()):
    self._executor = concurrent.futures.ProcessPoolExecutor(count, multiprocessing.get_context("fork"), initializer,
                                                            initargs)
    self._apply, self._window = functools.partial(_apply, function), 2 * count

  def imap(self, stream):
    pending = collections.deque()
    for item in stream:
      pending.append(self._executor.submit(self._apply, item))
      if len(pending) >= self._window:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()

  def close(self, wait=True):
    self._executor.shutdown(wait=wait, cancel_futures=not wait)


_SWAPPED = ("from quickdraw_tf import cli, make_records; from quickdraw_tf.pipelines import workers; "
            "from bench import records_pool; workers.Workers = records_pool.{}; "
            "cli.run(make_records.define_flags, make_records.main)")
POOLS = (("own pool (pipelines.workers.Workers)", ["-m", "quickdraw_tf.make_records"]),
         ("multiprocessing.Pool.imap", ["-c", _SWAPPED.format("PoolWorkers")]),
         ("concurrent.futures.ProcessPoolExecutor", ["-c", _SWAPPED.format("FuturesWorkers")]))


def measure(tmp, input_dir, trials):
  from bench import make_records as bench_make_records  # pylint: disable=g-import-not-at-top
  """{pool name: (seconds, cpu_seconds, peak MiB, drawings)}: the fastest of ``trials`` runs of each, in turn."""
  best = {}
  for _ in range(trials):
    for name, command in POOLS:
      out = os.path.join(tmp, "out")
      _, peak = bench_make_records.run_measured(
          [sys.executable, *command, f"--input={input_dir}", f"--output_dir={out}", "--progress=false",
           f"--workers={os.cpu_count()}"])
      with open(os.path.join(out, "stats.json")) as f:
        stats = json.load(f)
      result = (stats["seconds"], stats["cpu_seconds"], peak, sum(stats["totals"].values()))
      best[name] = min(best.get(name, result), result)
      best[name] = best[name][:2] + (max(best[name][2], peak),) + best[name][3:]
  return best


def main(_):
  from bench import make_records as bench_make_records  # pylint: disable=g-import-not-at-top
  inputs = [("README: strokes/", os.path.join(FLAGS.data_dir, "strokes"))]
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    if FLAGS.repeats:
      large = os.path.join(tmp, "large")
      os.makedirs(large)
      bench_make_records.build_input(large, FLAGS.repeats)
      inputs.append((f"{FLAGS.repeats}x simplified", large))
    for input_name, input_dir in inputs:
      best = measure(tmp, input_dir, FLAGS.trials)
      own = best[POOLS[0][0]][0]
      for name, (seconds, cpu, peak, drawings) in best.items():
        rows.append([input_name, f"{drawings:,}", name, f"{seconds:.2f}", f"{drawings / seconds:,.0f}",
                     f"{seconds / own:.3f}", f"{cpu:.2f}", f"{peak:.0f}"])
  body = report.table(["input", "drawings", "pool", "conversion s", "drawings/s", "time / own pool",
                       "CPU s", "peak PSS MiB"], rows)
  body += (f"\n\n{os.cpu_count()} workers each; the fastest of {FLAGS.trials} trials of each pool, run in turn. "
           "*Conversion* is make_records' own timer (after imports: scan, conversion, writing, metadata). "
           "The standard pools replace `pipelines.workers.Workers` in an otherwise unchanged run (same chunks, "
           "same writing loop in the parent); the rule (issue 34) keeps the own pool only where a standard one "
           "is more than 5% slower.")
  report.write_section("records_pool", "make_records: own worker pool against the standard library's",
                       f"python -m bench.records_pool --trials={FLAGS.trials} --repeats={FLAGS.repeats}", body)


if __name__ == "__main__":
  from bench import make_records as _flags_of  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  app.run(main)
