"""De-duplication of drawings by key_id or geometry, in memory that stays small.

`Deduplicator.duplicates` takes the table of each converted chunk in input
order and tells which rows repeat an earlier drawing; `HashSet` keeps the
64-bit hashes seen at about 8 bytes each.
"""

import numpy as np

from quickdraw_tf.pipelines import conversion


class HashSet:
  """A growing set of 64-bit hashes at about 8 bytes each (a Python set of ints takes about 60).

  New hashes go to a small Python set; at `flush` they are sorted into a
  uint64 run, and runs of similar size are merged, so the runs number
  O(log n) and a batch is looked up in each with one vectorised search.
  """

  FLUSH_AT = 1 << 16

  def __init__(self):
    self._runs = []  # Sorted, distinct uint64 arrays, largest first.
    self.recent = set()  # Python ints added since the last flush.

  def in_runs(self, hashes):
    """bool ``[k]``: which of uint64 ``hashes [k]`` were added before the last `flush`."""
    found = np.zeros(len(hashes), bool)
    for run in self._runs:
      index = np.minimum(np.searchsorted(run, hashes), len(run) - 1)
      found |= run[index] == hashes
    return found

  def flush(self):
    """Moves the recent hashes into the sorted runs once there are enough of them."""
    if len(self.recent) < self.FLUSH_AT:
      return
    run = np.sort(np.fromiter(self.recent, np.uint64, len(self.recent)))
    self.recent = set()
    while self._runs and len(self._runs[-1]) <= 2 * len(run):
      run = np.union1d(self._runs.pop(), run)
    self._runs.append(run)



class Deduplicator:
  """Tells drawings already seen, by the same key_id or the same geometry, from new ones."""

  def __init__(self):
    self._keys, self._geometry = HashSet(), HashSet()

  def duplicates(self, table):
    """Whether each row of a `conversion.COLUMNS` table repeats an earlier one (of this table or an earlier one).

    Args:
      table: uint64 ``[k, len(COLUMNS)]``; a key_hash of 0 means no key_id.

    Returns:
      list of k bools. The rows are remembered: a later table's copies of them are duplicates.
    """
    key_hashes, geometry_hashes = table[:, conversion.KEY_HASH], table[:, conversion.GEOMETRY_HASH]
    # Hashes seen in earlier tables, looked up for the whole table at once; the
    # recent sets hold those added since the last flush, this table's included.
    old_keys = self._keys.in_runs(key_hashes).tolist()
    old_geometries = self._geometry.in_runs(geometry_hashes).tolist()
    recent_keys, recent_geometries = self._keys.recent, self._geometry.recent
    duplicates = []
    for key_hash, geometry_hash, old_key, old_geometry in zip(key_hashes.tolist(), geometry_hashes.tolist(),
                                                              old_keys, old_geometries):
      duplicates.append(bool((key_hash and (old_key or key_hash in recent_keys)) or old_geometry or
                             geometry_hash in recent_geometries))
      # Both identities are remembered even for a duplicate: a later copy may share only one of them.
      if key_hash:
        recent_keys.add(key_hash)
      recent_geometries.add(geometry_hash)
    self._keys.flush()
    self._geometry.flush()
    return duplicates

