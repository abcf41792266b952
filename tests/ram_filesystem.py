"""A Beam file system for ``ram://``, TensorFlow's in-memory one, standing in for a bucket in tests.

Beam finds file systems by scheme among `FileSystem`'s subclasses, so
importing this module registers it. Like ``gs://`` it has no directories to
Beam (``has_dirs`` is False: a directory is a name prefix); the bytes are
those of ``tf.io.gfile``'s ``ram://``, so what a pipeline writes here the
launcher (``tf.io.gfile``), ``train`` and the tests read. It lives in this
process only: pipelines that use it run with the in-memory DirectRunner.
"""

import posixpath

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystem import CompressedFile
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.filesystem import FileSystem
import tensorflow as tf

_PREFIX = "ram://"


class RamFileSystem(FileSystem):
  """``ram://`` through ``tf.io.gfile``, as an object store: no directories, listing by prefix."""

  @classmethod
  def scheme(cls):
    return "ram"

  def join(self, basepath, *paths):
    return posixpath.join(basepath, *paths)

  def split(self, path):
    head, tail = posixpath.split(path[len(_PREFIX):])
    return _PREFIX + head, tail

  def mkdirs(self, path):
    tf.io.gfile.makedirs(path)

  def has_dirs(self):
    return False

  def _list(self, dir_or_prefix):
    root = dir_or_prefix if tf.io.gfile.isdir(dir_or_prefix) else posixpath.dirname(dir_or_prefix)
    if not tf.io.gfile.isdir(root):
      return
    for directory, _, names in tf.io.gfile.walk(root):
      for name in names:
        path = posixpath.join(directory, name)
        if path.startswith(dir_or_prefix):
          yield self.metadata(path)

  def _open(self, path, mode, compression_type):
    compression_type = FileSystem._get_compression_type(path, compression_type)  # pylint: disable=protected-access
    raw = tf.io.gfile.GFile(path, mode)
    return raw if compression_type == CompressionTypes.UNCOMPRESSED else CompressedFile(raw, compression_type)

  def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
    return self._open(path, "wb", compression_type)

  def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
    return self._open(path, "rb", compression_type)

  def copy(self, source_file_names, destination_file_names):
    for source, destination in zip(source_file_names, destination_file_names):
      tf.io.gfile.copy(source, destination, overwrite=True)

  def rename(self, source_file_names, destination_file_names):
    for source, destination in zip(source_file_names, destination_file_names):
      tf.io.gfile.rename(source, destination, overwrite=True)

  def exists(self, path):
    return tf.io.gfile.exists(path)

  def size(self, path):
    return tf.io.gfile.stat(path).length

  def last_updated(self, path):
    return tf.io.gfile.stat(path).mtime_nsec / 1e9

  def checksum(self, path):
    return str(self.size(path))

  def metadata(self, path):
    if not self.exists(path):
      raise BeamIOError(f"Path does not exist: {path}")
    return FileMetadata(path, self.size(path), self.last_updated(path))

  def delete(self, paths):
    for path in paths:
      if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
      elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def copy_tree(source, destination):
  """Copies the files under ``source`` to ``destination`` (either may be ``ram://``), through ``tf.io.gfile``."""
  for directory, _, names in tf.io.gfile.walk(source):
    target = posixpath.join(destination, posixpath.relpath(directory, source)) if directory != source else destination
    tf.io.gfile.makedirs(target)
    for name in names:
      tf.io.gfile.copy(posixpath.join(directory, name), posixpath.join(target, name), overwrite=True)
