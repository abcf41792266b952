"""A records directory replaced as a whole: the new set is written aside, then moved in by a journal.

A run writes its whole records set (shards and metadata) into
``output_dir/.partial-<pid>`` (`prepare_output`), then renames that to
``.ready-<pid>`` with a journal of the earlier run's files it replaces
(`mark_ready`), and commits (`commit`): it removes the old completion marker
(from then on no reader takes the directory for complete, so none mixes old
and new shards), the replaced files, then moves the new ones in, marker last.
A run killed during the commit leaves its complete set in ``.ready-<pid>``;
the next run finishes that commit before anything else (`recover`).
Directories of dead runs are removed.

An --output_dir URL (``gs://``, ``hdfs://``, any file system TensorFlow
knows) is written by the same steps through ``tf.io.gfile``, with two
differences, as object stores have neither directories to rename at once
nor one machine's process table: the set stays in its partial prefix, which
the journal written into it last marks ready (``.partial-<pid>-<host>``),
and only stages of this host are judged dead or alive; another host's are
left alone, with a warning naming them.
"""

import json
import os
import re
import socket

from absl import logging

from quickdraw_tf import cli
from quickdraw_tf import files
from quickdraw_tf.pipelines import records
from quickdraw_tf.pipelines.conversion import MakeRecordsError

_STAGE_RE = re.compile(r"\.(partial|ready)-(\d+)(?:-(.+))?")
JOURNAL = ".replaces.json"


def _stage_suffix(output_dir):
  """``<pid>``, or for a URL ``<pid>-<host>``: which process, on which machine, a stage belongs to."""
  return f"{os.getpid()}-{socket.gethostname()}" if cli.is_url(output_dir) else str(os.getpid())


def prepare_output(output_dir):
  """Checks ``output_dir`` can be written, cleans up after dead runs, and makes this run's partial directory.

  Runs before any input is read, so a wrong --output_dir costs nothing.

  Returns:
    The partial directory's path.
  """
  output_dir = check_output_dir(output_dir)
  partial = os.path.join(output_dir, f".partial-{_stage_suffix(output_dir)}")
  fs = files.for_path(output_dir)
  try:
    if not fs.isdir(output_dir):
      fs.mkdir(output_dir)
    recover(output_dir)
    fs.rmtree(partial)
    fs.mkdir(partial)
  except OSError as e:
    raise MakeRecordsError(f"cannot write into --output_dir={output_dir}: {e.strerror or e} "
                           "(check its permissions, or choose another --output_dir)") from None
  return partial


def remove_stage(stage):
  """Removes a partial or ready directory (a failed run's) and what it holds."""
  files.for_path(stage).rmtree(stage)


def check_output_dir(output_dir):
  """Raises unless ``output_dir`` is a directory or can be made one in an existing parent; returns it normalised."""
  if cli.is_url(output_dir):
    return output_dir.rstrip("/")  # Its file system says what it allows when the run writes.
  output_dir = os.path.normpath(output_dir)
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise MakeRecordsError(f"--output_dir={output_dir} is not a directory: remove it or choose another --output_dir")
  parent = os.path.dirname(os.path.abspath(output_dir))
  blocking = _file_above(parent)
  if blocking:
    raise MakeRecordsError(f"--output_dir={output_dir} lies under {blocking}, which is not a directory: "
                           "choose another --output_dir")
  if not os.path.isdir(parent):
    raise MakeRecordsError(f"the parent directory of --output_dir={output_dir} does not exist: create it "
                           f"(mkdir -p {parent}) or choose another --output_dir")
  if not os.access(output_dir if os.path.isdir(output_dir) else parent, os.W_OK | os.X_OK):
    raise MakeRecordsError(f"cannot write into --output_dir={output_dir}: permission denied "
                           "(check its permissions, or choose another --output_dir)")
  return output_dir


def _file_above(path):
  """The first existing path among ``path`` and its ancestors when it is not a directory, else None."""
  while not os.path.lexists(path):
    path = os.path.dirname(path)
  return None if os.path.isdir(path) else path


def _alive(pid):
  """Whether process ``pid`` runs (this process's own earlier directories count as dead)."""
  if pid == os.getpid():
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's process.
    return True
  return True


def recover(output_dir):
  """Finishes the commit a dead run left half done; removes the other directories of dead runs."""
  fs = files.for_path(output_dir)
  for name in sorted(fs.listdir(output_dir)):
    stage = _STAGE_RE.fullmatch(name)
    if not stage:
      continue
    path = os.path.join(output_dir, name)
    if stage.group(3) and stage.group(3) != socket.gethostname():  # Its process cannot be asked whether it runs.
      logging.warning("left %s alone: a run on host %s wrote it (remove it if that run is over)", path, stage.group(3))
      continue
    if _alive(int(stage.group(2))):
      continue
    # A ready set replaces the records only if the dead run had begun to (the old set is incomplete):
    # otherwise the complete records there (the old ones, or a later run's) are kept.
    ready = stage.group(1) == "ready" or (not fs.renames_directories and fs.exists(os.path.join(path, JOURNAL)))
    if ready and not records.is_complete(output_dir):
      logging.warning("completing the replacement of the records in %s that process %s began", output_dir,
                      stage.group(2))
      commit(output_dir, path)
    else:
      fs.rmtree(path)


def mark_ready(output_dir, partial):
  """Journals which earlier files the new set replaces, and renames ``partial`` to its ready name."""
  fs = files.for_path(output_dir)
  new = set(fs.listdir(partial))
  with fs.open(os.path.join(partial, JOURNAL), "w") as f:
    f.write(json.dumps(sorted(set(records.owned_files(output_dir)) - new)))
  if not fs.renames_directories:
    return partial  # The journal, written last, marks it ready.
  ready = os.path.join(output_dir, f".ready-{os.getpid()}")
  fs.replace(partial, ready)
  return ready


def commit(output_dir, ready):
  """Moves the complete set in ``ready`` into ``output_dir``; safe to redo after a kill at any point."""
  fs = files.for_path(output_dir)
  with fs.open(os.path.join(ready, JOURNAL), "r") as f:
    replaced = json.loads(f.read())
  marker = os.path.join(output_dir, records.COMPLETE_MARKER)
  if fs.exists(marker):
    fs.remove(marker)
  for name in replaced:
    if fs.exists(os.path.join(output_dir, name)):
      fs.remove(os.path.join(output_dir, name))
  for name in sorted(set(fs.listdir(ready)) - {JOURNAL}, key=lambda n: n == records.COMPLETE_MARKER):
    fs.replace(os.path.join(ready, name), os.path.join(output_dir, name))
  fs.rmtree(ready)

