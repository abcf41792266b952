r"""python -m quickdraw_tf.predict: the top classes of drawings, from an exported SavedModel.

  python -m quickdraw_tf.predict --saved_model=runs/rnn/saved_model --input=drawings.ndjson
  python -m quickdraw_tf.predict --saved_model=runs/resnet18/saved_model --input=sketch.png

ndjson: one drawing a line, QuickDraw's ``{"drawing": [[xs], [ys]], ...}``
(simplified or raw, any scale). PNG (image models): a drawing, dark on light
or light on dark, any size. A line that cannot be classified (not a drawing,
coordinates that are not finite float32 numbers, fewer than 2 points) is
skipped and reported with its line number; a file with no drawing to
classify is an error (exit status 1).
"""

import sys

from absl import flags
import tensorflow as tf

from quickdraw_tf import cli
from quickdraw_tf import progress
from quickdraw_tf.drawings import drawing_files

FLAGS = flags.FLAGS


def define_flags():
  """predict's flags: the SavedModel, the drawings, how to show progress."""
  cli.define_saved_model()
  cli.define_input()
  cli.define_progress()
  flags.mark_flags_as_required(["saved_model", "input"])


def main(_):
  """Prints the top classes of each drawing of ``--input`` (stdout), skipped ones with their reason (stderr)."""
  try:
    loaded = tf.saved_model.load(FLAGS.saved_model)
  except OSError as e:
    raise cli.Error(f"{FLAGS.saved_model} is not a SavedModel written by export: {e}") from None
  try:
    if FLAGS.input.lower().endswith(".png"):
      if "serving_image" not in loaded.signatures:
        raise cli.Error("this model reads strokes, not pixels; give an ndjson file of drawings")
      requests = [(FLAGS.input, {"image": tf.constant(drawing_files.read_png(FLAGS.input))})]
      signature = loaded.signatures["serving_image"]
    else:
      requests, signature = [], loaded.signatures["serving_default"]
      for number, points in drawing_files.read_ndjson(FLAGS.input):
        if isinstance(points, str):
          progress.write(f"{FLAGS.input}:{number}: skipped: {points}", sys.stderr)
          continue
        requests.append((f"{FLAGS.input}:{number}", {"ink": tf.constant(points[None]),
                                                     "length": tf.constant([len(points)], tf.int32)}))
  except (OSError, UnicodeDecodeError) as e:  # Missing, unreadable or not a PNG / not text.
    raise cli.Error(f"cannot read {FLAGS.input}: {e}") from None
  answered = 0
  # Printed through progress.write: a line clears the bar (stdout and stderr share a terminal), then redraws it.
  for where, inputs in progress.track(requests, FLAGS.progress, "predict", "drawings", total=len(requests)):
    outputs = signature(**inputs)
    if "valid" in outputs and not outputs["valid"].numpy()[0]:  # The SavedModel's own check.
      progress.write(f"{where}: skipped: cannot be classified (fewer than 2 points, or coordinates too large for "
                     "float32)", sys.stderr)
      continue
    ranked = ", ".join(f"{name.decode()} {p:.3f}" for name, p in zip(outputs["top_k_classes"].numpy()[0],
                                                                        outputs["top_k_probabilities"].numpy()[0]))
    progress.write(f"{where}: {ranked}")
    answered += 1
  if not answered:
    raise cli.Error(f"{FLAGS.input} holds no drawing that can be classified")


if __name__ == "__main__":
  cli.run(define_flags, main)
