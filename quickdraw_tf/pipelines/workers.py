"""Forked converter processes that take work in turn and give results back in input order.

`Workers(count, function, initializer, initargs).imap(stream)` is `map`
over the stream's `sources.Chunk`s, run in ``count`` processes; other items
of the stream (file errors) pass through in place. `convert_here` is the same
in this process, for one worker.
"""

import collections
import itertools
import multiprocessing
import queue
import threading
import traceback

from quickdraw_tf.drawings import sources


class _WorkerFailure:
  """An unexpected exception in a worker, carried back with its traceback."""

  def __init__(self, text):
    self.text = text


def _serve(chunks, results, inherited, function, initializer, initargs):
  """A worker process: converts the chunks arriving on ``chunks`` until None or EOF.

  One thread receives chunks as they come and another sends results, so this
  process converts without waiting on either pipe: the parent never blocks
  sending a chunk (no deadlock), and a result larger than the pipe's buffer
  does not hold the next conversion up until the parent reads it.
  """
  for other in inherited:  # The parent's pipe ends: closed here, so EOF reaches us if the parent dies.
    other.close()
  initializer(*initargs)
  inbox, outbox = queue.SimpleQueue(), queue.SimpleQueue()

  def receive():
    while True:
      try:
        chunk = chunks.recv()
      except (EOFError, OSError):
        chunk = None
      inbox.put(chunk)
      if chunk is None:
        return

  def send():
    for result in iter(outbox.get, None):
      try:
        results.send(result)
      except OSError:  # The parent is gone.
        return

  threading.Thread(target=receive, daemon=True).start()
  sender = threading.Thread(target=send, daemon=True)
  sender.start()
  for chunk in iter(inbox.get, None):
    try:
      outbox.put(function(chunk))
    except Exception:  # pylint: disable=broad-except
      outbox.put(_WorkerFailure(traceback.format_exc()))
  outbox.put(None)
  sender.join()


_PIPE_BUFFER = 1 << 20


def _widen(conn):
  """Gives a pipe a 1 MiB buffer where the system allows (Linux), so a whole chunk or result fits."""
  try:
    import fcntl  # pylint: disable=g-import-not-at-top
    fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BUFFER)
  except (ImportError, AttributeError, OSError):
    pass


class Workers:
  """Forked converter processes that take chunks in turn; results come back in input order.

  Chunk i goes to worker ``i % count`` and results are read back in the same
  turn. Unlike ``multiprocessing.Pool``, no helper threads pickle and
  unpickle in the parent, where they fought the writing loop for the GIL.
  Each worker holds at most `DEPTH` chunks, so it has its next one at hand
  when it finishes one, and memory does not grow with the input.
  """

  DEPTH = 2

  def __init__(self, count, function, initializer, initargs=()):
    context = multiprocessing.get_context("fork")
    self._closed = False
    self._sends, self._receives, self._processes = [], [], []
    for _ in range(count):
      chunks_out, chunks_in = context.Pipe(duplex=False)
      results_out, results_in = context.Pipe(duplex=False)
      _widen(chunks_in)
      _widen(results_in)
      inherited = self._sends + self._receives + [chunks_in, results_out]
      process = context.Process(target=_serve, daemon=True,
                                args=(chunks_out, results_in, inherited, function, initializer, initargs))
      process.start()
      chunks_out.close()
      results_in.close()
      self._sends.append(chunks_in)
      self._receives.append(results_out)
      self._processes.append(process)

  def imap(self, stream):
    """Converts the chunks of ``stream``; other items (file errors) pass through in place.

    Yields:
      ``function``'s results, and the stream's other items, in stream order.
    """
    stream = iter(stream)
    pending = collections.deque()  # Worker indices awaiting a result, and passed-through items, in stream order.
    turn = itertools.cycle(range(len(self._processes)))

    def feed():
      """Sends the next chunk to the next worker in turn; False at the end of the stream."""
      for item in stream:
        if not isinstance(item, sources.Chunk):
          pending.append(item)
          continue
        worker = next(turn)
        self._sends[worker].send(item)
        pending.append(worker)
        return True
      return False

    for _ in range(self.DEPTH * len(self._processes)):
      if not feed():
        break
    while pending:
      head = pending.popleft()
      if not isinstance(head, int):
        yield head
        continue
      result = self._receives[head].recv()
      feed()  # Keeps every worker supplied while this result is written.
      if isinstance(result, _WorkerFailure):
        raise RuntimeError(f"a converter process failed:\n{result.text}")
      yield result

  def close(self, wait=True):
    """Stops the workers: asks them to finish (``wait``) or terminates them. Idempotent."""
    if self._closed:
      return
    self._closed = True
    for send, process in zip(self._sends, self._processes):
      if wait:
        try:
          send.send(None)
        except OSError:
          pass
      else:
        process.terminate()
    for process in self._processes:
      process.join(timeout=10 if wait else None)
      if process.is_alive():
        process.terminate()
        process.join()
    for conn in self._sends + self._receives:
      conn.close()



def convert_here(stream, function, initializer, initargs=()):
  """`Workers.imap` without workers: applies ``function`` to the chunks in this process."""
  initializer(*initargs)
  for item in stream:
    yield function(item) if isinstance(item, sources.Chunk) else item

