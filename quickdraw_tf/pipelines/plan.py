"""What a make_records run reads and the classes it writes, decided before any drawing is converted."""

import dataclasses
import os

from quickdraw_tf.drawings import raster
from quickdraw_tf.drawings import sources
from quickdraw_tf.pipelines import records
from quickdraw_tf.pipelines.conversion import MakeRecordsError


def read_categories(value):
  """--categories: a comma-separated list or a file with one name a line -> list of str; raises on repeats."""
  if os.path.isfile(value):
    with open(value, encoding="utf-8") as f:
      names = [line.strip() for line in f if line.strip() and not line.startswith("#")]
  else:
    names = [name.strip() for name in value.split(",") if name.strip()]
  if len(set(names)) != len(names):
    raise MakeRecordsError(f"--categories lists a name twice: {sorted(n for n in set(names) if names.count(n) > 1)}")
  if not names:
    raise MakeRecordsError(f"--categories={value!r} names no category")
  return names


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a run reads and the classes it writes, as `make_plan` decides them.

  Attributes:
    sources: list of `sources.Source` to convert, sorted by path.
    class_names: list of str; a class's index is its position.
    has_ink: False when the input is numpy_bitmap images only.
    image_size: int, the side of the stored images; 0 for none.
    left_out: list of str, the paths of files of other categories than
      --categories, not read.
  """
  sources: list
  class_names: list
  has_ink: bool
  image_size: int
  left_out: list


def make_plan(inputs, categories, image_size, skips):
  """The sources to convert and the classes to write; input errors go to ``skips``.

  Args:
    inputs: list of str: files, directories or globs.
    categories: list of str (--categories), or None for all the words found.
    image_size: --stored_image_size.

  Returns:
    A `Plan`; its image_size is numpy_bitmap's side when the input is images only.
  """
  found, problems = sources.find_sources(inputs)
  for problem in problems:
    skips.add_error(problem)
  if not found:
    raise MakeRecordsError(f"no usable input file in {inputs} (expected {', '.join(sources.SUFFIXES)})")
  formats = {source.format for source in found}
  has_ink = formats != {"npy"}
  if "npy" in formats and has_ink:
    npy_paths = [source.path for source in found if source.format == "npy"]
    raise MakeRecordsError("numpy_bitmap .npy files hold images only and cannot share a records directory with "
                           f"vector drawings: convert them separately ({npy_paths[:3]})")
  if not has_ink and image_size not in (0, raster.BITMAP_SIZE):
    raise MakeRecordsError(f"numpy_bitmap images are {raster.BITMAP_SIZE}x{raster.BITMAP_SIZE}: --stored_image_size must be 0 or "
                           f"{raster.BITMAP_SIZE}, got {image_size} (the input pipeline resizes them)")
  if not has_ink:
    image_size = raster.BITMAP_SIZE
  if categories is None:
    # Names that cannot be a class are left out here; their records are counted as bad_word.
    class_names = sorted(w for w in set().union(*map(sources.scan_words, found)) if not records.class_name_problem(w))
    left_out = []
  else:
    class_names, left_out = _given_classes(categories, found)
  selected, left_out_set = [], set(left_out)
  for source in found:
    if source.path in left_out_set:
      continue
    if source.format != "ndjson" and source.word not in class_names:
      # npz and npy files are named after their class: one that cannot be a class name.
      skips.add("bad_word", source.path, 0, records.class_name_problem(source.word) or "not a class name")
    else:
      selected.append(source)
  return Plan(selected, class_names, has_ink, image_size, left_out)


def _given_classes(categories, found):
  """--categories, checked, and the paths of the `sources.Source`s ``found`` that hold other categories.

  Returns:
    (class_names, left_out): lists of str.
  """
  class_names = list(categories)
  for name in class_names:
    if records.class_name_problem(name):
      raise MakeRecordsError(f"--categories: {records.class_name_problem(name)}")
  # Google's files hold one category each: those of other categories are left out unread.
  left_out = []
  for source in found:
    first = sources.first_word(source)
    if first is not None and first not in class_names and source.word == first:
      left_out.append(source.path)
  return class_names, left_out

