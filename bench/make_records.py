r"""make_records speed, memory and fidelity, side by side with a naive converter.

  python -m bench.make_records [--repeats=8] [--trials=3] [--memory_repeats=32]
      [--data_dir=../shared/data/quickdraw]

Speed: every simplified drawing of the shared data (Google's simplified files
and the vlandham set), written `repeats` times with the key_ids and
coordinates of each copy changed so no copy is a duplicate, converted by
  * naive: one process, the way Google's tutorial does it (json -> numpy ->
    tf.train.Example per drawing, one TFRecordWriter);
  * make_records with 1 worker, with all cores, and with all cores and
    28-px images, drawn by its renderer (`raster.render_png`, cairo through
    cairocffi) and by the cairosvg one it replaced (`raster.render_svg`,
    then `raster.encode_png`).
Each runs as its own command (start-up included) in one run of this script,
`trials` times in turn (naive, ours, naive, ours, ...), so that load from
other users of the machine falls on all of them alike; the fastest trial of
each is reported, with its CPU time and the load average before it. Peak
memory is the largest summed PSS of the command's process tree over its
trials, taken at 1x, `repeats`x and (make_records alone) `memory_repeats`x
input to show whether it grows with input size.

Fidelity: raw -> simplified conversion against Google's own simplified
versions of the same drawings (same key_id), and the cairosvg renderer
against Google's numpy_bitmap rows of the same drawings.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from absl import app
from absl import flags
import numpy as np

from bench import report
from quickdraw_tf.drawings import ink
from quickdraw_tf.drawings import raster

flags.DEFINE_integer("repeats", 8, "Copies of the simplified data in the large input.")
flags.DEFINE_integer("trials", 3, "Runs of each converter; the fastest is reported.", lower_bound=1)
flags.DEFINE_integer("memory_repeats", 32, "Copies in the largest input, converted by make_records alone to "
                     "measure peak memory (0: skip).", lower_bound=0)
report.define_data_dir()
flags.DEFINE_bool("images_only", False, "Only the two renderers side by side (1x input) and the fidelity checks, "
                  "into a section of their own.")
FLAGS = flags.FLAGS

SIMPLIFIED_SOURCES = ("simplified_lamnguyen", "simplified_codybenlewis", "simplified_vlandham")

# Google's tutorial converter (create_dataset.py / parse_line), one process; it
# only reports its time (wall and CPU) at the end.
NAIVE = r'''
import json, os, sys, time, numpy as np, tensorflow as tf
started, cpu_started = time.time(), time.process_time()
files = sorted(os.path.join(sys.argv[1], f) for f in os.listdir(sys.argv[1]))
classes = sorted({os.path.basename(f)[:-len(".ndjson")] for f in files})
def parse_line(line):
  sample = json.loads(line)
  inkarray = sample["drawing"]
  total_points = sum(len(stroke[0]) for stroke in inkarray)
  np_ink = np.zeros((total_points, 3), dtype=np.float32)
  current_t = 0
  for stroke in inkarray:
    for i in [0, 1]:
      np_ink[current_t:(current_t + len(stroke[0])), i] = stroke[i]
    current_t += len(stroke[0])
    np_ink[current_t - 1, 2] = 1
  lower = np.min(np_ink[:, 0:2], axis=0)
  upper = np.max(np_ink[:, 0:2], axis=0)
  scale = upper - lower
  scale[scale == 0] = 1
  np_ink[:, 0:2] = (np_ink[:, 0:2] - lower) / scale
  np_ink[1:, 0:2] -= np_ink[0:-1, 0:2]
  return np_ink[1:, :], sample["word"]
with tf.io.TFRecordWriter(sys.argv[2]) as writer:
  for path in files:
    for line in open(path):
      np_ink, word = parse_line(line)
      features = {
          "class_index": tf.train.Feature(int64_list=tf.train.Int64List(value=[classes.index(word)])),
          "ink": tf.train.Feature(float_list=tf.train.FloatList(value=np_ink.flatten())),
          "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=np_ink.shape)),
      }
      writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
with open(sys.argv[3], "w") as f:
  json.dump({"seconds": time.time() - started, "cpu_seconds": time.process_time() - cpu_started}, f)
'''


def build_input(out_dir, repeats):
  """Writes the simplified drawings `repeats` times, every copy unique; returns the count."""
  import collections  # pylint: disable=g-import-not-at-top
  by_word = collections.defaultdict(list)
  for source in SIMPLIFIED_SOURCES:
    for path in sorted(glob.glob(os.path.join(FLAGS.data_dir, "strokes", source, "*.ndjson"))):
      with open(path) as f:
        for line in f:
          record = json.loads(line)
          by_word[record["word"]].append(record)
  count = 0
  for word, recs in by_word.items():
    with open(os.path.join(out_dir, f"{word}.ndjson"), "w") as f:
      for copy in range(repeats):
        for record in recs:
          record = dict(record, drawing=[[[x + copy for x in stroke[0]], stroke[1]] for stroke in record["drawing"]])
          if "key_id" in record:  # vlandham has none: its shifted geometry keeps copies apart.
            record["key_id"] = f"{record['key_id']}-{copy}"
          f.write(json.dumps(record) + "\n")
          count += 1
  return count


def run_measured(command):
  """Runs a command; returns (wall seconds, peak PSS of its process tree in MiB)."""
  import psutil  # pylint: disable=g-import-not-at-top
  started = time.time()
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  peak = [0]

  def poll():
    parent = psutil.Process(process.pid)
    while process.poll() is None:
      try:
        # PSS: pages shared by forked workers are counted once, not per process.
        rss = sum(p.memory_full_info().pss for p in [parent] + parent.children(recursive=True))
        peak[0] = max(peak[0], rss)
      except psutil.Error:
        pass
      time.sleep(0.05)

  watcher = threading.Thread(target=poll, daemon=True)
  watcher.start()
  _, err = process.communicate()
  elapsed = time.time() - started
  watcher.join()
  if process.returncode:
    raise RuntimeError(f"{command} failed:\n{err.decode()[-3000:]}")
  return elapsed, peak[0] / 2**20


# make_records with `raster.render_svg` as its renderer (forked workers inherit it).
WITH_CAIROSVG = ("from quickdraw_tf import cli, make_records; from quickdraw_tf.drawings import raster; "
                 "raster.render_png = lambda p, s: raster.encode_png(raster.render_svg(p, s)); "
                 "cli.run(make_records.define_flags, make_records.main)")


def _converters(tmp, input_dir, cores, images):
  """(name, command, file with its conversion seconds) of every converter."""
  args = [f"--input={input_dir}", "--progress=false"]
  ours = [sys.executable, "-m", "quickdraw_tf.make_records"] + args
  runs = [("naive tutorial converter, 1 process",
           [sys.executable, "-c", NAIVE, input_dir, f"{tmp}/naive.tfr", f"{tmp}/naive.json"], f"{tmp}/naive.json")]
  for name, extra, out in (("make_records --workers=1", ["--workers=1"], "w1"),
                           (f"make_records --workers={cores}", [f"--workers={cores}"], "wn"),
                           (f"make_records --workers={cores} --stored_image_size=28",
                            [f"--workers={cores}", "--stored_image_size=28"], "img")):
    if "image_size" in name and not images:
      continue
    runs.append((name, ours + extra + [f"--output_dir={tmp}/{out}"], os.path.join(tmp, out, "stats.json")))
  if images:
    runs.append((f"make_records --workers={cores} --stored_image_size=28, cairosvg renderer (before)",
                 [sys.executable, "-c", WITH_CAIROSVG] + args + [f"--workers={cores}", "--stored_image_size=28",
                                                                 f"--output_dir={tmp}/svg"],
                 os.path.join(tmp, "svg", "stats.json")))
  return runs


def speed_table(tmp):
  """Converts the 1x and `repeats`x inputs with every converter, `trials` times in turn."""
  cores = os.cpu_count()
  rows, image_rates = [], []
  sizes = [("1x", 1, not FLAGS.images_only, True)]
  if not FLAGS.images_only:
    sizes.append((f"{FLAGS.repeats}x", FLAGS.repeats, True, False))
  if FLAGS.memory_repeats and not FLAGS.images_only:
    sizes.append((f"{FLAGS.memory_repeats}x", FLAGS.memory_repeats, False, False))
  for size_name, repeats, with_naive, images in sizes:
    input_dir = os.path.join(tmp, f"input-{size_name}")
    os.makedirs(input_dir)
    n = build_input(input_dir, repeats)
    runs = _converters(tmp, input_dir, cores, images)  # Images only on the 1x input: rendering is ~1 ms a drawing.
    if FLAGS.images_only:
      runs = [run for run in runs if "image_size" in run[0]]
    elif not with_naive:  # The largest input measures make_records' memory: all cores, once.
      runs = runs[2:3]
    trials = FLAGS.trials if with_naive else 1
    best = {}
    for _ in range(trials):
      for name, command, timing in runs:
        load = os.getloadavg()[0]
        wall, peak = run_measured(command)
        with open(timing) as f:
          timings = json.load(f)
        seconds, cpu = timings["seconds"], timings["cpu_seconds"]
        previous = best.get(name)
        if previous is None or seconds < previous[1]:
          best[name] = (wall, seconds, cpu, load, max(peak, previous[4] if previous else 0))
        else:
          best[name] = previous[:4] + (max(peak, previous[4]),)
      for out in ("img", "svg"):
        shutil.rmtree(os.path.join(tmp, out), ignore_errors=True)
    naive = best.get(runs[0][0]) if with_naive else None
    for name, _, _ in runs:
      wall, seconds, cpu, load, peak = best[name]
      versus = (f"{naive[0] / wall:.2f}x", f"**{naive[1] / seconds:.2f}x**") if naive else ("", "")
      rows.append([size_name, f"{n:,}", name, f"{wall:.1f}", f"{n / wall:,.0f}", versus[0], f"{seconds:.2f}",
                   f"{n / seconds:,.0f}", versus[1], f"{cpu / n * 1e6:.1f}", f"{load:.1f}", f"{peak:,.0f}"])
      if "image_size" in name:
        image_rates.append(n / seconds)
    shutil.rmtree(input_dir)
  table = report.table(["input", "drawings", "converter", "wall s", "drawings/s (wall)", "vs naive (wall)",
                        "conversion s", "drawings/s (conversion)", "vs naive (conversion)",
                        "CPU µs per drawing (conversion)", "load before", "peak PSS MiB"], rows)
  ours, cairosvg = image_rates
  return (f"{table}\n\nWith 28-px images, the cairo renderer converts **{ours / cairosvg:.1f}x** as many drawings "
          f"a second as the cairosvg one ({ours:,.0f} against {cairosvg:,.0f}), same pixels (fidelity below).")


def fidelity_table():
  """raw->simplified against Google's simplified; renderer against numpy_bitmap."""
  simplified = {}
  for path in glob.glob(os.path.join(FLAGS.data_dir, "strokes", "simplified_lamnguyen", "*.ndjson")):
    with open(path) as f:
      for line in f:
        record = json.loads(line)
        simplified[record["key_id"]] = record["drawing"]
  exact, distances, point_ratio = 0, [], []
  for path in sorted(glob.glob(os.path.join(FLAGS.data_dir, "strokes", "raw_exupery", "*.ndjson"))):
    with open(path) as f:
      for line in f:
        record = json.loads(line)
        if record["key_id"] not in simplified:
          continue
        ours = ink.simplify_raw(ink.strokes_to_points(record["drawing"]))
        google = ink.strokes_to_points(simplified[record["key_id"]])
        exact += ours.shape == google.shape and np.array_equal(ours, google)
        d = np.hypot(ours[:, None, 0] - google[None, :, 0], ours[:, None, 1] - google[None, :, 1])
        distances.append((d.min(1).mean() + d.min(0).mean()) / 2)
        point_ratio.append(len(ours) / len(google))
  n = len(distances)
  mad = {raster.render: [], raster.render_svg: []}
  for path in sorted(glob.glob(os.path.join(FLAGS.data_dir, "bitmaps28", "numpy_bitmap_prefix", "*.npy"))):
    bitmaps = np.load(path)
    word = os.path.basename(path)[:-4]
    with open(os.path.join(FLAGS.data_dir, "strokes", "simplified_lamnguyen", f"{word}.ndjson")) as f:
      for row, line in enumerate(f):
        points = ink.strokes_to_points(json.loads(line)["drawing"])
        for renderer in (raster.render, raster.render_svg):
          mad[renderer].append(np.abs(renderer(points, 28).astype(float).ravel() - bitmaps[row]).mean())
  rows = [
      ["raw -> simplified (`ink.simplify_raw`) vs Google's simplified, same key_id", f"{n:,} drawings",
       f"{exact / n:.1%} identical; mean symmetric chamfer distance {np.mean(distances):.3f} px "
       f"(95th pct {np.percentile(distances, 95):.3f}); points ours/Google {np.mean(point_ratio):.3f}"],
  ]
  for renderer, name in ((raster.render, "cairo render (`raster.render`"), (raster.render_svg, "cairosvg render "
                                                                             "(`raster.render_svg`")):
    rows.append([f"{name}, 28 px) vs Google's numpy_bitmap, same drawing", f"{len(mad[renderer])} images",
                 f"mean absolute difference {np.mean(mad[renderer]):.4f} on 0-255 (max {np.max(mad[renderer]):.4f})"])
  return report.table(["check", "on", "result"], rows)


def main(_):
  with tempfile.TemporaryDirectory() as tmp:
    speed = speed_table(tmp)
  if FLAGS.images_only:
    body = (f"### 28-px images: cairo against cairosvg\n\n{speed}\n\nBoth run as in the `make_records` section, on "
            f"its 1x input (the fastest of {FLAGS.trials} trial(s), in turn).\n\n"
            f"### Fidelity on the shared data\n\n{fidelity_table()}\n")
    report.write_section("make_records_images", "make_records: rendering images",
                         "python -m bench.make_records " + " ".join(sys.argv[1:]), body)
    return
  body = (f"### Conversion speed and peak memory\n\n{speed}\n\n"
          f"Each converter runs as a separate command, {FLAGS.trials} times in turn; the table "
          "shows the trial with the shortest conversion. *Wall* includes interpreter start-up and the TensorFlow (and, for "
          "make_records, tensorflow-datasets) imports, about 3-5 s here; *conversion* is the time after the "
          "imports: for make_records the category scan, conversion, writing and metadata, for the naive "
          "converter its read-convert-write loop. *CPU µs per drawing* is the user and system time of the "
          "conversion (the command and its workers, same span) per drawing: unlike the rates, it hardly depends "
          "on what else runs on the machine; *load before* is the 1-minute load average when the trial started (other "
          f"users share this {os.cpu_count()}-core machine). Peak memory is the largest summed PSS of the "
          "command's processes over its trials (pages shared by forked workers counted once). The one part of "
          "make_records that grows with the input is its de-duplication index: two 64-bit hashes per unique "
          "drawing, kept in sorted numpy arrays (16 bytes a drawing, 1.6 MB per 100k) behind a Python set of "
          "at most 65,536 recent ones.\n\n"
          f"### Fidelity on the shared data\n\n{fidelity_table()}\n")
  report.write_section("make_records", "make_records", "python -m bench.make_records " +
                       " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
  app.run(main)
