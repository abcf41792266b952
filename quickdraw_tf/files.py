"""One set of file calls for local paths and URLs (gs://, hdfs://, ram://: any file system ``tf.io.gfile`` knows).

`for_path` picks them by the path: Python's own (os, shutil, glob) for a
local path, so that local runs behave exactly as before; ``tf.io.gfile``'s
for a URL, imported only then (make_records' converter processes do not pay
for TensorFlow), with its errors raised as OSError, as the local calls raise
theirs. Object stores rename no directory at once: ``renames_directories``
says whether this file system does.
"""

import glob
import io
import os
import shutil

from quickdraw_tf import cli


class LocalFiles:
  """A local path's file calls (POSIX: a directory renames at once). Each looks ``os`` up when called."""

  renames_directories = True

  @staticmethod
  def listdir(path):
    return os.listdir(path)

  @staticmethod
  def isdir(path):
    return os.path.isdir(path)

  @staticmethod
  def isfile(path):
    return os.path.isfile(path)

  @staticmethod
  def exists(path):
    return os.path.exists(path)

  @staticmethod
  def glob(pattern):
    return glob.glob(pattern)

  @staticmethod
  def walk(path):
    return os.walk(path)

  @staticmethod
  def size(path):
    return os.path.getsize(path)

  @staticmethod
  def remove(path):
    os.remove(path)

  @staticmethod
  def replace(source, destination):
    os.replace(source, destination)

  @staticmethod
  def mkdir(path):
    os.mkdir(path)

  @staticmethod
  def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)

  @staticmethod
  def open(path, mode):
    return open(path, mode, encoding=None if "b" in mode else "utf-8")  # pylint: disable=consider-using-with


class GfileFiles:
  """The same calls on a URL, through ``tf.io.gfile``; its errors as OSError naming the path."""

  renames_directories = False

  def __init__(self):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._gfile, self._errors = tf.io.gfile, tf.errors

  def _call(self, operation, path, *args, **kwargs):
    try:
      return operation(path, *args, **kwargs)
    except self._errors.OpError as e:
      raise OSError(f"{path}: {e.message}") from None

  def listdir(self, path):
    return [name.rstrip("/") for name in self._call(self._gfile.listdir, path)]

  def isdir(self, path):
    return self._call(self._gfile.isdir, path)

  def isfile(self, path):
    return self.exists(path) and not self.isdir(path)

  def exists(self, path):
    return self._call(self._gfile.exists, path)

  def glob(self, pattern):
    return self._call(self._gfile.glob, pattern)

  def walk(self, path):
    return self._call(lambda p: list(self._gfile.walk(p)), path)

  def size(self, path):
    return self._call(self._gfile.stat, path).length

  def remove(self, path):
    self._call(self._gfile.remove, path)

  def replace(self, source, destination):
    self._call(self._gfile.rename, source, destination, overwrite=True)

  def mkdir(self, path):
    self._call(self._gfile.makedirs, path)

  def rmtree(self, path):
    if self.exists(path):
      self._call(self._gfile.rmtree, path)

  def open(self, path, mode):
    """A GFile; read "rb" as a buffered stream (GFile lacks ``readlines(hint)``, which `sources` reads by)."""
    opened = self._call(self._gfile.GFile, path, mode)
    return io.BufferedReader(_GFileReader(opened)) if mode == "rb" else opened


class _GFileReader(io.RawIOBase):
  """A ``tf.io.gfile.GFile`` opened "rb" as a raw stream, so that ``io.BufferedReader`` gives it the full file API."""

  def __init__(self, gfile):
    super().__init__()
    self._gfile = gfile

  def readable(self):
    return True

  def readinto(self, buffer):
    data = self._gfile.read(len(buffer))
    buffer[:len(data)] = data
    return len(data)

  def close(self):
    self._gfile.close()
    super().close()


def for_path(path):
  """The file calls for ``path``: `LocalFiles`, or for a URL `GfileFiles`."""
  return GfileFiles() if cli.is_url(path) else LocalFiles
