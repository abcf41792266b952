r"""make_records on its local pool against the same conversion on Apache Beam's DirectRunner.

  /path/to/venv-with-beam/bin/python -m bench.records_beam [--repeats=32] [--trials=1]
      [--data_dir=../shared/data/quickdraw]

Runs `python -m quickdraw_tf.make_records` with all cores, once on its local
pool (--workers) and once with
--beam_pipeline_options=runner=DirectRunner,direct_num_workers=<cores>,direct_running_mode=multi_processing,
on the README's input (`<data_dir>/strokes`, ink and 28 px images) and on the
685k-drawing input of `bench.make_records` (the simplified drawings written
`repeats` times, every copy unique; ink only: 28-px images of it take an hour
here). Both write the same records (tests/test_records_beam.py). Reported:
drawings/s of the conversion (make_records' own timer, after imports), CPU
seconds of the command and every process it waited for, and the peak summed
PSS of its process tree; then a projection for the full data set from the
CPU cost per drawing.
"""

import json
import os
import resource
import sys
import tempfile

from absl import app
from absl import flags

from bench import report

FLAGS = flags.FLAGS
FULL_DATA_SET = 50_000_000  # Drawings in all 345 categories of QuickDraw, about.
PROJECTED_WORKERS = (2, 32, 128)


def _children_cpu():
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _run(tmp, input_dir, image_size, beam):
  """(conversion seconds, CPU seconds, peak PSS MiB, drawings) of one make_records command."""
  from bench import make_records as bench_make_records  # pylint: disable=g-import-not-at-top
  cores = os.cpu_count()
  out = os.path.join(tmp, "out")
  command = [sys.executable, "-m", "quickdraw_tf.make_records", f"--input={input_dir}", f"--output_dir={out}",
             "--progress=false", f"--stored_image_size={image_size}"]
  command += ([f"--beam_pipeline_options=runner=DirectRunner,direct_num_workers={cores},"
               "direct_running_mode=multi_processing"] if beam else [f"--workers={cores}"])
  cpu_before = _children_cpu()
  _, peak = bench_make_records.run_measured(command)
  with open(os.path.join(out, "stats.json")) as f:
    stats = json.load(f)
  return stats["seconds"], _children_cpu() - cpu_before, peak, sum(stats["totals"].values())


def main(_):
  from bench import make_records as bench_make_records  # pylint: disable=g-import-not-at-top
  cores = os.cpu_count()
  rows, projections = [], []
  with tempfile.TemporaryDirectory() as tmp:
    inputs = [("README: strokes/", os.path.join(FLAGS.data_dir, "strokes"), (0, 28))]
    if FLAGS.repeats:
      large = os.path.join(tmp, "large")
      os.makedirs(large)
      bench_make_records.build_input(large, FLAGS.repeats)
      inputs.append((f"{FLAGS.repeats}x simplified", large, (0,)))
    for input_name, input_dir, sizes in inputs:
      for image_size in sizes:
        best = {}
        for _ in range(FLAGS.trials):
          for beam in (False, True):
            result = _run(tmp, input_dir, image_size, beam)
            best[beam] = min(best.get(beam, result), result)
        for beam, (seconds, cpu, peak, drawings) in best.items():
          name = f"Beam DirectRunner, multi_processing, {cores} workers" if beam else f"local pool, {cores} workers"
          images = f"{image_size} px" if image_size else "ink"
          rows.append([input_name, images, f"{drawings:,}", name, f"{seconds:.1f}", f"{drawings / seconds:,.0f}",
                       f"{seconds / best[False][0]:.2f}", f"{1e6 * cpu / drawings:,.0f}", f"{peak:.0f}"])
          if input_dir != inputs[0][1] or image_size:  # The largest ink input, and images.
            hours = [FULL_DATA_SET * cpu / drawings / n / 3600 for n in PROJECTED_WORKERS]
            projections.append([images, name, f"{1e6 * cpu / drawings:,.0f}"] + [f"{h:.2f}" for h in hours])
  body = report.table(["input", "stored", "drawings", "converter", "conversion s", "drawings/s", "time / local",
                       "CPU µs per drawing", "peak PSS MiB"], rows)
  body += ("\n\n**Projection** (not a measurement) for the full data set, about 50 million drawings: its CPU cost per "
           "drawing as measured above, spread over N workers that scale perfectly (no shuffle, start-up or I/O "
           "cost counted), in hours:\n\n")
  body += report.table(["stored", "measured on", "CPU µs per drawing"] + [f"N={n}" for n in PROJECTED_WORKERS],
                       projections)
  body += (f"\n\nThe fastest of {FLAGS.trials} trial(s), local and Beam in turn. *Conversion* is make_records' own "
           "timer (after imports: scan, conversion, writing, metadata); *CPU* is the user and system time of the "
           "command and every process it waited for, over its whole run (start-up included); peak memory is the "
           "largest summed PSS of its process tree. Both write the same examples in each split "
           "(tests/test_records_beam.py); Beam's DirectRunner is a test runner that runs every transform on this "
           "machine, the local pool's work plus Beam's grouping by geometry and key_id hash (de-duplication) and "
           "its encoding of each element between stages.")
  report.write_section("records_beam", "make_records: local pool against Apache Beam (DirectRunner)",
                       f"python -m bench.records_beam --repeats={FLAGS.repeats} --trials={FLAGS.trials}", body)


if __name__ == "__main__":
  from bench import make_records as _flags_of  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  app.run(main)
