r"""python -m quickdraw_tf.export: a trained run's serving SavedModel, or its TensorFlow Lite model.

  python -m quickdraw_tf.export --model_dir=runs/rnn [--output=runs/rnn/saved_model]
  python -m quickdraw_tf.export --model_dir=runs/rnn --format=tflite [--quantize=float16]

The SavedModel's signatures and serving contract: `serving.saved_model`
(classifiers) and `serving.sketch_rnn_export` (sketch_rnn); TFLite:
`serving.tflite`. The export core's names stay importable from here
(``export.export``, ``export.CLASSES_ASSET``, ...) for the callers that use them.
"""

import os

from absl import flags

from quickdraw_tf import cli
from quickdraw_tf import models
from quickdraw_tf import progress
from quickdraw_tf.serving import saved_model
from quickdraw_tf.serving import sketch_rnn_export
from quickdraw_tf.serving import tflite
from quickdraw_tf.serving.saved_model import CLASSES_ASSET
from quickdraw_tf.serving.saved_model import TOP_K
from quickdraw_tf.serving.saved_model import export
from quickdraw_tf.serving.saved_model import serving_ink
from quickdraw_tf.serving.saved_model import write_archive
from quickdraw_tf.training import run_dir

__all__ = ["CLASSES_ASSET", "TOP_K", "export", "serving_ink", "write_archive", "define_flags", "main"]

FLAGS = flags.FLAGS


def define_flags():
  """export's flags: the run, its weights, where to write and in which format."""
  cli.define_model_dir()
  cli.define_weights()
  flags.DEFINE_string("output", None, f"SavedModel directory (default <model_dir>/{run_dir.SAVED_MODEL}; tflite: "
                      "<model_dir>/model.tflite).")
  flags.DEFINE_enum("format", "savedmodel", ["savedmodel", "tflite"], "savedmodel, or TensorFlow Lite (see "
                    "quickdraw_tf/serving/tflite.py).")
  flags.DEFINE_enum("quantize", "none", list(tflite.QUANTIZATIONS), "tflite weights: float16, or int8 (dynamic "
                    "range).")
  flags.mark_flags_as_required(["model_dir"])


def main(_):
  """Writes the SavedModel (or .tflite) of ``--model_dir``'s weights; prints where."""
  try:
    model, config = run_dir.restore(FLAGS.model_dir, FLAGS.weights)
  except FileNotFoundError as e:
    raise cli.Error(str(e)) from None
  if FLAGS.format == "tflite":
    return tflite.main(model, config, FLAGS.output or os.path.join(FLAGS.model_dir, "model.tflite"), FLAGS.quantize)
  output = FLAGS.output or os.path.join(FLAGS.model_dir, run_dir.SAVED_MODEL)
  if models.get(config["model"]).trainer:  # A generative model: encode/decode/sample signatures.
    sketch_rnn_export.export(model, output)
  else:
    saved_model.export(model, models.get(config["model"]), config["classes"], output, run_dir.image_size(config))
  progress.write(f"wrote {output}; inspect with: saved_model_cli show --dir {output} --all")


if __name__ == "__main__":
  cli.run(define_flags, main)
