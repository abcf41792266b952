"""How a long verb shows its progress (``--progress``): a live tqdm bar, or lines.

``auto`` is a bar when the output is a terminal and lines otherwise (a log
file, a pipe, a notebook); ``bar`` and ``lines`` force either. Bars go to
stderr, so what a verb prints on stdout is the same in every mode. In
``lines`` mode ``train`` prints Keras' one line per epoch (``fit(verbose=2)``)
and the other verbs nothing more than their results.

  verbose, callbacks = progress.fit_output(mode, 2, batch_size)   # for model.fit
  for batch in progress.track(batches, mode, "evaluate", "drawings", total=n): ...
  progress.write(line)   # print(line), around any live bar
"""

import sys

import keras
import tqdm

from quickdraw_tf import cli

BAR_INTERVAL = 0.5  # seconds between redraws: lively, without flooding a slow terminal


def resolve(mode, *streams):
  """The mode to use: ``mode`` itself, or for "auto" "bar" when every one of ``streams`` is a terminal.

  Args:
    mode: str, one of `cli.PROGRESS_MODES`.
    *streams: file objects that decide "auto" (default: sys.stderr, where bars go).

  Returns:
    "bar" or "lines".

  Raises:
    ValueError: an unknown mode.
  """
  cli.check_choice(mode, cli.PROGRESS_MODES, "progress mode")
  if mode != "auto":
    return mode
  return "bar" if all(_is_terminal(stream) for stream in streams or (sys.stderr,)) else "lines"


def _is_terminal(stream):
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError):  # A writer without isatty, or a closed file.
    return False


def fit_output(mode, verbose, batch_size):
  """How ``model.fit`` (or a loop driving Keras callbacks) shows progress: (fit's ``verbose``, callbacks to add).

  "lines" keeps ``verbose`` (2: Keras' line per epoch, on stdout); "bar" is
  verbose 0 and an `EpochBar`. "auto" is a bar only when stdout too is a
  terminal: stdout sent to a file or a pipe asks for the lines there.
  ``verbose`` 0 (a library caller's) stays silent in every mode.

  Args:
    mode: str, one of `cli.PROGRESS_MODES`.
    verbose: int, Keras' verbosity for the lines mode.
    batch_size: int, the global batch size (for examples/s).

  Returns:
    (int, list of keras.callbacks.Callback).
  """
  bar = resolve(mode, sys.stdout, sys.stderr) == "bar"
  return (0, [EpochBar(batch_size)]) if bar and verbose else (verbose, [])


def track(items, mode, desc, unit, total=None, weight=None):
  """``items`` as they are, or in "bar" mode (`resolve`) behind a bar on stderr that counts them as they are used.

  Args:
    items: an iterable (batches of a split, drawings of a file).
    mode: str, one of `cli.PROGRESS_MODES`.
    desc: str, the bar's label.
    unit: str, what it counts, plural ("drawings").
    total: int or None, how many units ``items`` hold, when known (the bar
      then shows the share done and the time left).
    weight: item -> units in it (default 1 each), e.g. the drawings of a batch.

  Returns:
    an iterable of the same items.
  """
  if resolve(mode) != "bar":  # Checked here, not at the first item.
    return items
  return _tracked(items, _bar(desc, total, unit), weight)


def _tracked(items, bar, weight):
  with bar:  # Closed also when the caller stops early (the generator is closed).
    for item in items:
      try:
        yield item
      finally:  # Counted once used: also the last one of a caller that stops there.
        bar.update(weight(item) if weight else 1)


def write(text, file=None):
  """``print(text, file=file, flush=True)`` (default stdout), clearing any live bar first and redrawing it after."""
  file = sys.stdout if file is None else file
  with tqdm.tqdm.external_write_mode(file=file):
    print(text, file=file, flush=True)


def _bar(desc, total, unit, show_rate=True, leave=True):
  """A tqdm bar on stderr: "desc:  40%|####  | 40/100 drawings [00:10<00:15, 4.00 drawings/s, <postfix>]".

  Without a total: "desc: 40 drawings [00:10, 4.00 drawings/s, <postfix>]".
  """
  done = "{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit} [{elapsed}<{remaining}" if total else (
      "{n_fmt}{unit} [{elapsed}")
  rate = ", {rate_noinv_fmt}" if show_rate else ""  # noinv: "0.50 drawings/s", never "2.00s/ drawings".
  return tqdm.tqdm(desc=desc, total=total, unit=f" {unit}", file=sys.stderr, leave=leave, dynamic_ncols=True,
                   mininterval=BAR_INTERVAL, bar_format="{desc}: " + done + rate + "{postfix}]")


def _postfix(logs, names, examples_per_second):
  """ "loss 1.2345, accuracy 0.4500, 256.0 examples/s": the ``names`` that ``logs`` has, and the rate if known."""
  parts = [f"{name} {float(logs[name]):.4f}" for name in names if name in (logs or {})]
  if examples_per_second:
    parts.append(f"{examples_per_second:.1f} examples/s")
  return ", ".join(parts)


class EpochBar(keras.callbacks.Callback):
  """fit's progress on stderr: a tqdm bar per epoch (steps, loss, accuracy, examples/s, time left).

  Steps count against the epoch's when fit knows them (no total, no time
  left, otherwise). An epoch's finished bar stays, with its eval metrics and mean examples/s:
  the epoch's line. While fit evaluates, a second bar counts the eval steps
  and goes when they end. Works with any loop that calls Keras callbacks with
  ``params`` "epochs" and "steps" (train's multi-worker loop).
  """

  SHOWN = ("loss", "accuracy")  # of the logs; at an epoch's end with their "val_" twins

  def __init__(self, batch_size):
    """``batch_size``: int, examples a step (the global batch)."""
    super().__init__()
    self.batch_size = batch_size
    self.bars = {}  # "train" or "eval" -> its open tqdm bar

  def on_epoch_begin(self, epoch, logs=None):
    self._open("train", f"epoch {epoch + 1}/{self.params.get('epochs', '?')}", self.params.get("steps"),
               leave=True)

  def on_train_batch_end(self, batch, logs=None):
    self._advance("train", batch, logs)

  def on_test_begin(self, logs=None):
    if "train" in self.bars:  # fit's evaluation after an epoch, not model.evaluate.
      self._open("eval", "  eval", None, leave=False)

  def on_test_batch_end(self, batch, logs=None):
    self._advance("eval", batch, logs)

  def on_test_end(self, logs=None):
    self._close("eval")

  def on_epoch_end(self, epoch, logs=None):
    bar = self.bars.get("train")
    if bar is not None:
      elapsed = bar.format_dict["elapsed"]
      names = self.SHOWN + tuple(f"val_{name}" for name in self.SHOWN)
      bar.set_postfix_str(_postfix(logs, names, bar.n * self.batch_size / elapsed if elapsed else None),
                          refresh=False)
    self._close("train")

  def on_train_end(self, logs=None):
    for name in list(self.bars):  # One stopped mid-epoch.
      self._close(name)

  def _open(self, name, desc, steps, leave):
    self._close(name)
    self.bars[name] = _bar(desc, steps, "steps", show_rate=False, leave=leave)

  def _advance(self, name, batch, logs):
    bar = self.bars.get(name)
    if bar is None:
      return
    # tqdm's recent steps/s (smoothed), or the mean so far before it has one.
    info = bar.format_dict
    rate = info["rate"] or (bar.n / info["elapsed"] if info["elapsed"] else None)
    bar.set_postfix_str(_postfix(logs, self.SHOWN, rate * self.batch_size if rate else None), refresh=False)
    bar.update(batch + 1 - bar.n)  # Batch indices, not calls: right also with steps_per_execution > 1.

  def _close(self, name):
    bar = self.bars.pop(name, None)
    if bar is not None:
      bar.close()
