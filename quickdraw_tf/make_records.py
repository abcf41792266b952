"""QuickDraw drawings -> sharded TFRecords (train / eval / test).

  python -m quickdraw_tf.make_records --input=../shared/data/quickdraw/strokes
  python -m quickdraw_tf.make_records --download=cat,dog --stored_image_size=28

Reads Google's simplified and raw ndjson (plain or gzipped), sketch-rnn .npz
and numpy_bitmap .npy; writes the schema of `records.py`. Splits come from a
hash of each drawing's key_id (of its geometry when it has none), so a drawing
lands in the same split whatever the worker count, file order or set of
categories. Duplicates (same key_id or same geometry) are written once.

Bad records are skipped and counted by reason (stats.json), the first few
reported with file and line (a file named .gz that is not gzip: not_gzip);
with --strict the first one stops the run. A class name follows
`records.class_name_problem` (the demo's POST /ndjson follows it too), and
classes.txt lists only classes with drawings: a class that gets none stops
the run.
Shards are written under a temporary directory and moved into place at the
end, dataset_info.json last: a directory without it is incomplete. Only the
files an earlier run wrote are replaced, and a replacement that a kill cut
short is finished by the next run (see `pipelines.journal`).
"""

import gc
import itertools
import json
import logging
import os
import shutil
import sys
import time

from absl import app
from absl import flags

from quickdraw_tf import DEFAULT_RECORDS_ROOT
from quickdraw_tf import cli
from quickdraw_tf.drawings import sources
from quickdraw_tf.pipelines import conversion
from quickdraw_tf.pipelines import dedup
from quickdraw_tf.pipelines import journal
from quickdraw_tf.pipelines import plan as plan_lib
from quickdraw_tf.pipelines import records
from quickdraw_tf.pipelines import tally as tally_lib
from quickdraw_tf.pipelines import workers as workers_lib

MakeRecordsError = conversion.MakeRecordsError


class _ShardWriter:
  """The shards of a records set, written in ``partial`` under temporary names until `commit` names them.

  Opened by the constructor; ``with`` closes the files, on an error too. The
  files stay in ``partial``, which a failed run removes and the next run
  removes after a killed one: the records directory gets them from `journal.commit`.
  """

  def __init__(self, partial, num_shards):
    """``num_shards``: ((split, count), ...) as in `conversion.Options`."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    self._partial = partial
    counts = dict(num_shards)
    # [split code][shard], split codes as in `COLUMNS`: indices into records.SPLITS.
    self._writers = [[tf.io.TFRecordWriter(self._temporary(split, i)) for i in range(counts[split])]
                     for split in records.SPLITS]
    self.lengths = [[0] * len(w) for w in self._writers]  # [split code][shard] examples written.

  def _temporary(self, split, shard):
    return os.path.join(self._partial, f"{split}-{shard:05d}.tmp")

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    for writer in itertools.chain.from_iterable(self._writers):
      writer.close()

  def write(self, split, shard, example):
    """Appends a serialized example to shard ``shard`` of split code ``split``."""
    self._writers[split][shard].write(example)
    self.lengths[split][shard] += 1

  def commit(self):
    """Gives the closed non-empty shards their final names, renumbered; removes the empty ones.

    Returns:
      dict split -> examples per final shard.
    """
    return {split: records.renumber_shards(self._partial, split,
                                           [(self._temporary(split, i), n) for i, n in enumerate(self.lengths[code])],
                                           os.replace, os.remove)
            for code, split in enumerate(records.SPLITS)}



def _shard_counts(num_shards, eval_fraction, test_fraction):
  train_fraction = max(1.0 - eval_fraction - test_fraction, 1e-9)
  def count(fraction):
    return int(min(num_shards, max(1, round(num_shards * fraction / train_fraction))))
  return (("train", num_shards), ("eval", count(eval_fraction)), ("test", count(test_fraction)))




def convert(inputs, output_dir, categories=None, max_per_class=0, eval_fraction=0.1, test_fraction=0.1,
            num_shards=8, workers=None, image_size=0, max_points=0, strict=False, chunk_size=256, progress=True,
            beam_pipeline_options=None):
  """Converts QuickDraw files into a records directory.

  The new records are written aside, in ``output_dir/.partial-<pid>``, and
  replace the earlier ones only once complete (see `pipelines.journal`); of the files in
  ``output_dir`` only those an earlier run wrote are replaced.

  Args:
    inputs: files, directories or globs; with ``beam_pipeline_options`` also
      URLs (any file system both Beam and ``tf.io.gfile`` know).
    output_dir: the records directory to (re)write; its parent must exist
      (a URL, with ``beam_pipeline_options``: see `pipelines.journal`).
    categories: None (all found), or a list of class names (this order).
    max_per_class: keep at most this many drawings per class (0: all): the
      first in input order (files sorted by path, records in file order),
      the same drawings whichever path, local or Beam, converts.
    eval_fraction, test_fraction: shares of the hash-split (ignored for npz,
      whose train/valid/test splits are kept).
    num_shards: train shards; eval and test get a proportional number.
    workers: converter processes (default: number of cores); with 1, this
      process converts.
    image_size: 0 for no images, else the side of a rendered ``image``.
    max_points: skip drawings with more points (0: no limit).
    strict: stop at the first bad record.
    chunk_size: drawings per work unit.
    progress: show a progress bar.
    beam_pipeline_options: None for the local pool; else run as a Beam
      pipeline with these options, "runner=DirectRunner,direct_num_workers=2"
      (TFDS's convention; `pipelines.beam_records`). Same records.

  Returns:
    The stats dict also written to stats.json.

  Raises:
    MakeRecordsError: nothing usable, bad options, an output directory that
      cannot be written (before any input is read), or (strict) bad input.
  """
  # Loaded first: workers forked below inherit example_pb2 rather than each
  # paying TensorFlow's import (no TensorFlow op has run yet, so forking is
  # safe), and start-up stays out of the measured conversion time.
  from tensorflow.core.example import example_pb2  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  import tensorflow_datasets  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  started = time.time(), tally_lib.cpu_seconds()
  workers = workers or os.cpu_count() or 1
  _check_splits(eval_fraction, test_fraction, num_shards)
  _check_urls(inputs, output_dir, beam_pipeline_options)
  beam_records = _beam_records() if beam_pipeline_options else None
  partial = journal.prepare_output(output_dir)
  try:
    skips = tally_lib.Skips(strict)
    plan = plan_lib.make_plan(inputs, categories, image_size, skips)
    options = conversion.Options(class_index={w: i for i, w in enumerate(plan.class_names)}, image_size=plan.image_size,
                      max_points=max_points, eval_fraction=eval_fraction, test_fraction=test_fraction,
                      num_shards=_shard_counts(num_shards, eval_fraction, test_fraction),
                      categories_given=categories is not None)
    tally = tally_lib.Tally(len(plan.class_names), max_per_class)
    if beam_records:
      tally, shard_lengths = beam_records.run(plan, options, partial, max_per_class, chunk_size,
                                              beam_pipeline_options, skips)
    else:
      with _ShardWriter(partial, options.num_shards) as shards:
        _convert_sources(plan.sources, options, workers, shards, skips, tally, chunk_size, progress)
      shard_lengths = shards.commit()
    _check_written(plan, tally, skips)
    stats = tally_lib.stats(plan, options, tally, skips, beam_pipeline_options or workers, started, shard_lengths)
    _write_metadata(partial, stats)
  except BaseException:
    journal.remove_stage(partial)
    raise
  # From here on the new set is complete: a failure leaves it for the next run to move into place.
  journal.commit(output_dir, journal.mark_ready(output_dir, partial))
  return stats


def _beam_records():
  """`pipelines.beam_records`, or a MakeRecordsError naming the extra that installs Apache Beam."""
  root = logging.getLogger()
  level = root.level
  root.setLevel(max(level, logging.ERROR))  # Beam's import logs what its Google Cloud modules lack, unasked.
  try:
    from quickdraw_tf.pipelines import beam_records  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    if not (e.name or "").startswith("apache_beam"):
      raise
    raise MakeRecordsError("--beam_pipeline_options needs Apache Beam: pip install 'quickdraw_tf[beam]' "
                           "(or leave the option out to convert with the local pool)") from None
  finally:
    root.setLevel(level)
  return beam_records


def _check_urls(inputs, output_dir, beam_pipeline_options):
  """Raises MakeRecordsError for a URL (gs://...) without --beam_pipeline_options: the local pool's files are local."""
  urls = [f"--input={path}" for path in inputs if cli.is_url(path)] + (
      [f"--output_dir={output_dir}"] if cli.is_url(output_dir) else [])
  if urls and not beam_pipeline_options:
    raise MakeRecordsError(f"{urls[0]}: the local pool reads and writes local (or mounted) files only: add "
                           "--beam_pipeline_options (e.g. runner=DirectRunner,direct_num_workers=2; docs/beam.md)")


def _check_splits(eval_fraction, test_fraction, num_shards):
  """Raises MakeRecordsError unless the split fractions leave room for training data and there is a shard."""
  if not 0 <= eval_fraction < 1 or not 0 <= test_fraction < 1 or eval_fraction + test_fraction >= 1:
    raise MakeRecordsError(f"--eval_fraction={eval_fraction} and --test_fraction={test_fraction} must be in [0, 1) "
                           "and leave room for training data")
  if num_shards < 1:
    raise MakeRecordsError(f"--num_shards must be at least 1, got {num_shards}")




def _convert_sources(found, options, workers, shards, skips, tally, chunk_size, progress):
  """Converts the `sources.Source`s ``found`` and writes the drawings kept into ``shards``.

  Args:
    options: the `conversion.Options` the converters run with.
    workers: converter processes; with 1, this process converts.
    shards: the open `_ShardWriter`.
    tally: the `tally.Tally` to count the drawings written in.
    chunk_size: records per `sources.Chunk`.

  The workers are closed on return (terminated on an exception).
  """
  frozen_before = gc.get_freeze_count()
  gc.freeze()  # Imported objects: out of the collector's way, and not copied into forked workers.
  work = (conversion.convert_chunk, conversion.init, (options,))
  pool = workers_lib.Workers(workers, *work) if workers > 1 else None
  try:
    stream = sources.chunk_stream(found, chunk_size)
    results = pool.imap(stream) if pool else workers_lib.convert_here(stream, *work)
    _write_results(results, shards, skips, tally, progress)
  except BaseException:
    if pool:
      pool.close(wait=False)
    raise
  finally:
    if not frozen_before:  # As the caller had it.
      gc.unfreeze()
  if pool:
    pool.close()  # Done with them: their CPU time now counts in this process's children.


def _write_results(results, shards, skips, tally, progress):
  """Writes the drawings of converted chunks, in input order, that are new and within --max_per_class.

  Args:
    results: `convert_chunk` results, and in place of the rest of a file
      that could not be read its `sources.SourceError`.
    shards: the open `_ShardWriter`.
    tally: the `tally.Tally` to count the drawings written in.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  deduplicator = dedup.Deduplicator()
  bar = tqdm(unit=" drawings", disable=not progress, smoothing=0.1, mininterval=0.5)
  try:
    for result in results:
      if isinstance(result, sources.SourceError):
        skips.add_error(result)
        continue
      blob, table, chunk_skips = result
      for reason, path, line, message in chunk_skips:
        skips.add(reason, path, line, message)
      start = 0
      for (end, split, shard, class_index, _, _, length), duplicate in zip(table.tolist(),
                                                                           deduplicator.duplicates(table)):
        begin, start = start, end
        if duplicate:
          skips.counts["duplicate"] += 1
        elif tally.full(class_index):
          skips.counts["over_max_per_class"] += 1
        else:
          shards.write(split, shard, blob[begin:end])
          tally.add(split, class_index, length)
      bar.update(len(table) + len(chunk_skips))
  finally:
    bar.close()


def _check_written(plan, tally, skips):
  """Raises MakeRecordsError when no drawing was written, or when a class got none.

  classes.txt lists only classes with drawings: a class without any would be
  an output no example trains.
  """
  if not tally.written:
    raise MakeRecordsError(f"no drawing was written from {len(plan.sources)} file(s); skips: {dict(skips.counts)}")
  missing = [w for i, w in enumerate(plan.class_names) if not tally.per_class[i]]
  if missing:
    kept = [w for i, w in enumerate(plan.class_names) if tally.per_class[i]]
    listed = ",".join(kept) if len(kept) <= 10 else "FILE (a file with one name a line)"
    raise MakeRecordsError(f"{len(missing)} categories have no drawing: {missing[:10]} (skips: {dict(skips.counts)}); "
                           f"fix their input, or leave them out: --categories={listed}")


def _write_metadata(partial, stats):
  """Writes the class list, stats.json and the TFDS metadata into ``partial``, from the `_stats` dict."""
  records.write_classes(partial, stats["classes"])
  records.write_text(os.path.join(partial, records.STATS_FILE), json.dumps(stats, indent=1))
  records.write_tfds_metadata(partial, stats["classes"], stats["image_size"], stats["shard_lengths"])



# --- Command line ------------------------------------------------------------

def define_flags():
  """Defines make_records' flags: --input, --output_dir, the split and shard options, --download, ..."""
  flags.DEFINE_multi_string("input", [], "Input files, directories or globs (repeatable); with "
                            "--beam_pipeline_options also URLs (gs://...; docs/beam.md).")
  flags.DEFINE_string("output_dir", None, f"Records directory (default {DEFAULT_RECORDS_ROOT}/<name>); with "
                      "--beam_pipeline_options also a URL (gs://...).")
  flags.DEFINE_string("name", "quickdraw", "Name of the records directory under tfrecords/.")
  flags.DEFINE_string("categories", None, "Comma-separated class names, or a file with one a line (default: all found).")
  flags.DEFINE_integer("max_per_class", 0, "Keep at most this many drawings per class (0: all): the first new ones "
                       "in input order (files sorted by path, records in file order), a stable key: the local pool "
                       "and --beam_pipeline_options keep the same drawings.", lower_bound=0)
  flags.DEFINE_float("eval_fraction", 0.1, "Share of drawings in the eval split.")
  flags.DEFINE_float("test_fraction", 0.1, "Share of drawings in the test split.")
  flags.DEFINE_integer("num_shards", 8, "Number of train shards (eval and test get a proportional number).",
                       lower_bound=1)
  flags.DEFINE_integer("workers", None, "Converter processes (default: number of cores).", lower_bound=1)
  flags.DEFINE_string("beam_pipeline_options", None, "Convert with an Apache Beam pipeline (pip install "
                      "'quickdraw_tf[beam]') instead of the local pool, with these options (TFDS's convention), e.g. "
                      "runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing or "
                      "runner=FlinkRunner,flink_master=HOST:8081 (docs/beam.md). Same records. --input and "
                      "--output_dir stay local (or mounted) paths.")
  flags.DEFINE_integer("stored_image_size", 0, "Also store a rendered image of this side (0: no images).",
                       lower_bound=0)
  flags.DEFINE_integer("image_size", None, "Deprecated name of --stored_image_size (train's --image_size is the "
                       "side a model reads).", lower_bound=0)
  flags.DEFINE_integer("max_points", 0, "Skip drawings with more points than this (0: no limit).", lower_bound=0)
  flags.DEFINE_bool("strict", False, "Stop at the first bad record instead of skipping and counting it.")
  flags.DEFINE_list("download", [], "Categories to fetch from the public QuickDraw bucket first, e.g. cat,dog.")
  flags.DEFINE_enum("download_kind", "simplified", ["simplified", "raw", "numpy_bitmap", "sketchrnn"],
                    "Which variant of the dataset to download.")
  flags.DEFINE_string("download_url", None, "Base URL of the bucket (default: Google's public bucket).")
  flags.DEFINE_string("cache_dir", None, "Where downloads are kept (default ~/.cache/quickdraw_tf).")
  flags.DEFINE_bool("progress", True, "Show a progress bar.")


def _stored_image_size():
  """--stored_image_size, or the deprecated --image_size with a note."""
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if FLAGS.image_size is None:
    return FLAGS.stored_image_size
  if FLAGS["stored_image_size"].present:
    raise app.UsageError("give --stored_image_size only (--image_size is its deprecated name)")
  from quickdraw_tf import progress  # pylint: disable=g-import-not-at-top  # In here: it loads keras (see `main`).
  progress.write("make_records: --image_size is deprecated; it is now --stored_image_size", sys.stderr)
  return FLAGS.image_size


def main(argv):
  """Converts --input (and any --download) into a records directory (`convert`); prints what it wrote.

  Returns:
    0 (errors raise: `cli.run` prints them in one line).
  """
  del argv
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  inputs = list(FLAGS.input)
  output_dir = FLAGS.output_dir or os.path.join(DEFAULT_RECORDS_ROOT, FLAGS.name)
  image_size = _stored_image_size()
  try:
    if not FLAGS.output_dir:
      os.makedirs(DEFAULT_RECORDS_ROOT, exist_ok=True)
    journal.check_output_dir(output_dir)  # Before a download too.
  except OSError as e:
    raise MakeRecordsError(str(e)) from None
  if FLAGS.download:
    from quickdraw_tf.drawings import download  # pylint: disable=g-import-not-at-top
    kwargs = {k: v for k, v in (("base_url", FLAGS.download_url), ("cache_dir", FLAGS.cache_dir)) if v}
    inputs += download.fetch(FLAGS.download, kind=FLAGS.download_kind, progress=FLAGS.progress, **kwargs)
  if not inputs:
    raise app.UsageError("give --input (files, directories, globs) or --download=word,word")
  stats = convert(
      inputs, output_dir,
      categories=plan_lib.read_categories(FLAGS.categories) if FLAGS.categories else None,
      max_per_class=FLAGS.max_per_class, eval_fraction=FLAGS.eval_fraction, test_fraction=FLAGS.test_fraction,
      num_shards=FLAGS.num_shards, workers=FLAGS.workers, image_size=image_size,
      max_points=FLAGS.max_points, strict=FLAGS.strict, progress=FLAGS.progress,
      beam_pipeline_options=FLAGS.beam_pipeline_options)
  # Imported once converted: progress loads keras, which neither the worker processes nor an early error need.
  from quickdraw_tf import progress  # pylint: disable=g-import-not-at-top
  bad = {k: v for k, v in stats["skipped"].items() if k not in tally_lib.NOT_ERRORS}
  progress.write(f"wrote {sum(stats['totals'].values())} drawings of {len(stats['classes'])} classes to {output_dir} "
                 f"({stats['totals']}) in {stats['seconds']} s, {stats['drawings_per_second']} drawings/s; "
                 f"skipped {stats['skipped'] or 'none'}")
  if stats["files_left_out"]:
    progress.write(f"left out {len(stats['files_left_out'])} input file(s) of categories not in --categories, unread")
  if bad:
    progress.write(f"bad records were skipped: {bad}; see {os.path.join(output_dir, records.STATS_FILE)}", sys.stderr)
  return 0


if __name__ == "__main__":
  cli.run(define_flags, main)

