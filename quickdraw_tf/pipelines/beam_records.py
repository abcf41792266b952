"""make_records' conversion as an Apache Beam pipeline (``--beam_pipeline_options``), for any Beam runner.

The same work as the local pool, by the same code: each input file is cut
into chunks by `sources.chunks` (opened through Beam's ``FileSystems``, so
any file system Beam knows) and converted by `conversion.convert_chunk`;
the examples are written with Beam's ``WriteToTFRecord`` into the run's
partial directory, which `journal` moves into place once complete. The
order-dependent choices of the local path are made by input position
(``(file index in path order, chunk, row)``), so both paths keep the same
drawings:

  * a drawing is a duplicate when an earlier one (by position) has its
    key_id or its geometry: two groupings, by geometry hash and by key hash;
  * --max_per_class keeps the first N non-duplicates of a class by position;
  * the first bad records reported in stats.json are the first by position.

Shards take examples in an order of Beam's choosing: the multiset of each
split's examples equals the local path's, the shard each lands in need not.
"""

import json
import logging
import os

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from quickdraw_tf import cli
from quickdraw_tf.drawings import sources
from quickdraw_tf.pipelines import conversion
from quickdraw_tf.pipelines import records
from quickdraw_tf.pipelines import tally as tally_lib

_SUMMARY = ".beam-summary.json"
_AFTER_CHUNKS = 1 << 62  # Chunk ordinal of a file's read error: after its chunks, as the local path meets it.
_EXAMPLES_KEPT = 20  # Bad records reported in stats.json, as `tally.Skips` keeps them.
_POSITION, _SPLIT, _CLASS, _KEY, _GEOMETRY, _LENGTH, _EXAMPLE = range(7)  # Fields of a row.


def pipeline_options(value):
  """TFDS's convention: "runner=DirectRunner,direct_num_workers=2" -> `PipelineOptions`.

  Beam's workers log errors only unless the options say otherwise.
  """
  options = [option.strip() for option in value.split(",") if option.strip()]
  if not any(option.startswith("default_sdk_harness_log_level=") for option in options):
    options.append("default_sdk_harness_log_level=ERROR")
  return PipelineOptions(flags=[f"--{option}" for option in options])


def _open(path):
  """A file's bytes through Beam's file systems, undecompressed (`sources` gunzips .gz itself)."""
  return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


class _ConvertFile(beam.DoFn):
  """(file index, `sources.Source`) -> rows ``(position, split code, class, key hash, geometry hash, ink length,
  serialized example)``, and on the "skips" output ``(position, reason, path, line, message)``."""

  def __init__(self, options, chunk_size):
    super().__init__()
    self._options, self._chunk_size = options, chunk_size

  def setup(self):
    conversion.init(self._options)

  def process(self, element):
    index, source = element
    for ordinal, item in enumerate(sources.chunk_stream([source], self._chunk_size, _open)):
      if isinstance(item, sources.SourceError):
        yield beam.pvalue.TaggedOutput("skips", ((index, _AFTER_CHUNKS, 0), item.reason, item.path, item.line,
                                                 item.message))
        continue
      blob, table, skips = conversion.convert_chunk(item)
      for k, skip in enumerate(skips):
        yield beam.pvalue.TaggedOutput("skips", ((index, ordinal, k), *skip))
      start = 0
      for row, (end, split, _, class_index, key_hash, geometry_hash, length) in enumerate(table.tolist()):
        yield ((index, ordinal, row), split, class_index, key_hash, geometry_hash, length, blob[start:end])
        start = end


def _firsts(keyed_rows):
  """(hash, rows) -> each row with whether it comes first (by position) among those sharing the hash."""
  _, rows = keyed_rows
  first = min(row[0][_POSITION] for row in rows)
  for row, *flags in rows:
    yield (row, *flags, row[_POSITION] == first)


def _new(rows):
  """Rows (with first-by-geometry flags) -> those no earlier row matches by key_id or geometry."""
  with_key = rows | "ByKey" >> beam.Filter(lambda r: r[0][_KEY]) | beam.Map(lambda r: (r[0][_KEY], r))
  firsts = (with_key | "GroupByKey" >> beam.GroupByKey() | "FirstByKey" >> beam.FlatMap(_firsts)
            | beam.Map(lambda r: (r[0], r[1] and r[2])))
  without_key = rows | "NoKey" >> beam.Filter(lambda r: not r[0][_KEY])
  return ((firsts, without_key) | beam.Flatten() | beam.Filter(lambda r: r[1]) | "Row" >> beam.Map(lambda r: r[0]))


def _first_per_class(rows, max_per_class):
  """The first ``max_per_class`` rows of each class by position (all rows when 0)."""
  if not max_per_class:
    return rows
  return (rows | "ByClass" >> beam.Map(lambda r: (r[_CLASS], r))
          | beam.combiners.Top.PerKey(max_per_class, key=lambda r: r[_POSITION], reverse=True)
          | beam.FlatMap(lambda kv: kv[1]))


def _summary(converted, kept, written):
  """One dict of the run's counts: written per (split, class) and per ink length, skips, first bad records."""
  parts = [
      written | "Counts" >> beam.Map(lambda r: ((r[_SPLIT], r[_CLASS]), 1)) | "SumCounts" >> beam.CombinePerKey(sum)
      | "CountsEntry" >> beam.Map(lambda kv: ("counts", kv)),
      written | "Lengths" >> beam.Map(lambda r: (r[_LENGTH], 1)) | "SumLengths" >> beam.CombinePerKey(sum)
      | "LengthsEntry" >> beam.Map(lambda kv: ("lengths", kv)),
      converted.skips | "Reasons" >> beam.Map(lambda s: (s[1], 1)) | "SumReasons" >> beam.CombinePerKey(sum)
      | "ReasonsEntry" >> beam.Map(lambda kv: ("skipped", kv)),
      converted.skips | "Bad" >> beam.Filter(lambda s: s[1] not in tally_lib.NOT_ERRORS)
      | beam.combiners.Top.Of(_EXAMPLES_KEPT, key=lambda s: s[0], reverse=True)
      | "ExamplesEntry" >> beam.Map(lambda top: ("examples", [list(s[1:]) for s in top])),
  ]
  for name, rows in (("rows", converted.rows), ("kept", kept), ("written", written)):
    parts.append(rows | f"Count{name}" >> beam.combiners.Count.Globally()
                 | f"{name}Entry" >> beam.Map(lambda n, name=name: (name, n)))
  return parts | "Summary" >> beam.Flatten() | beam.combiners.ToList()


def _write_summary(entries, path):
  summary = {"counts": [], "lengths": [], "skipped": [], "examples": []}
  for name, value in entries:
    if name in ("rows", "kept", "written"):
      summary[name] = value
    elif name == "examples":
      summary[name] = value
    else:
      summary[name].append(value)
  with FileSystems.create(path) as f:
    f.write(json.dumps(summary).encode())


def _build(pipeline, plan, options, partial, max_per_class, chunk_size):
  """Adds the conversion of ``plan`` into ``partial`` to ``pipeline``."""
  converted = (pipeline | "Sources" >> beam.Create(list(enumerate(plan.sources)))
               | "Reshuffle" >> beam.Reshuffle()  # One file a worker.
               | "Convert" >> beam.ParDo(_ConvertFile(options, chunk_size)).with_outputs("skips", main="rows"))
  by_geometry = (converted.rows | "ByGeometry" >> beam.Map(lambda r: (r[_GEOMETRY], (r,)))
                 | "GroupByGeometry" >> beam.GroupByKey() | "FirstByGeometry" >> beam.FlatMap(_firsts))
  kept = _new(by_geometry)
  written = _first_per_class(kept, max_per_class)
  shards = dict(options.num_shards)
  splits = written | "Split" >> beam.Partition(lambda r, n: r[_SPLIT], len(records.SPLITS))
  for code, split in enumerate(records.SPLITS):
    prefix = os.path.join(partial, f"{records.DATASET_NAME}-{split}.{records.FILE_FORMAT}")
    (splits[code] | f"Examples{split}" >> beam.Map(lambda r: r[_EXAMPLE])
     | f"Write{split}" >> beam.io.WriteToTFRecord(prefix, num_shards=shards[split],
                                                   shard_name_template="-SSSSS-of-NNNNN"))
  (_summary(converted, kept, written)
   | "WriteSummary" >> beam.Map(_write_summary, os.path.join(partial, _SUMMARY)))


def _renumber_shards(partial):
  """Counts the examples of each written shard, removes the empty ones and renumbers the rest, as the local path.

  Returns:
    dict split -> examples per final shard.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  lengths = {}
  for split in records.SPLITS:
    written = sorted(tf.io.gfile.glob(os.path.join(partial, f"{records.DATASET_NAME}-{split}.{records.FILE_FORMAT}-*")))
    counts = [int(tf.data.TFRecordDataset(path).reduce(0, lambda n, _: n + 1)) for path in written]
    lengths[split] = records.renumber_shards(partial, split, list(zip(written, counts)),
                                             lambda src, dst: tf.io.gfile.rename(src, dst, overwrite=True),
                                             tf.io.gfile.remove)
  return lengths


def _check_file_systems(paths):
  """Raises MakeRecordsError for the first path whose scheme Beam has no file system for (gs:// without its extra)."""
  for scheme in dict.fromkeys(path.split("://")[0] for path in paths if cli.is_url(path)):
    try:
      FileSystems.get_filesystem(f"{scheme}://")
    except ValueError as e:
      raise conversion.MakeRecordsError(f"{scheme}:// paths: Beam cannot read or write them: {e}") from None


def run(plan, options, partial, max_per_class, chunk_size, beam_options, skips):
  """Converts ``plan`` into ``partial`` with a Beam pipeline run with ``beam_options``.

  Args:
    plan: the `plan.Plan`; options: its `conversion.Options`.
    partial: the run's partial directory (`journal.prepare_output`).
    beam_options: str, "key=value,key=value" as TFDS takes them.
    skips: the `tally.Skips` the plan's problems went to; the pipeline's are added.

  Returns:
    (tally, shard_lengths): the `tally.Tally` of the drawings written, and
    split -> examples per shard.
  """
  _check_file_systems([source.path for source in plan.sources] + [partial])
  beam_logger = logging.getLogger("apache_beam")
  level = beam_logger.level
  beam_logger.setLevel(max(level, logging.WARNING))  # Its progress lines would drown the run's own.
  try:
    with beam.Pipeline(options=pipeline_options(beam_options)) as pipeline:
      _build(pipeline, plan, options, partial, max_per_class, chunk_size)
  finally:
    beam_logger.setLevel(level)
  with FileSystems.open(os.path.join(partial, _SUMMARY)) as f:
    summary = json.loads(f.read())
  FileSystems.delete([os.path.join(partial, _SUMMARY)])
  before = dict(skips.counts)
  for reason, path, line, message in summary["examples"]:
    skips.add(reason, path, line, message)  # As the local path met them: logged, kept, or (--strict) raised.
  skips.counts.clear()
  skips.counts.update(before)
  skips.counts.update(dict(summary["skipped"]))
  skips.counts["duplicate"] += summary["rows"] - summary["kept"]
  skips.counts["over_max_per_class"] += summary["kept"] - summary["written"]
  skips.counts += {}  # Drops the zero counts.
  tally = tally_lib.Tally(len(plan.class_names), max_per_class)
  for (split, class_index), n in summary["counts"]:
    tally.per_class[class_index] += n
    tally.counts[split][class_index] += n
  tally.lengths.update(dict(summary["lengths"]))
  return tally, _renumber_shards(partial)
