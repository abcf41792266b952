"""TensorFlow Lite: the serving SavedModel converted with TFLite builtin ops only, and its interpreter.

  python -m quickdraw_tf.export --model_dir=runs/rnn --format=tflite [--quantize=float16] --output=rnn.tflite

Sequence models (``rnn``, ``bilstm``): the ``.tflite`` has the SavedModel's
``serving_default`` signature with the raw-ink preprocessing in the graph:
``ink`` float32 ``[1, points, 3]`` and ``length`` int32 ``[1]`` in,
``probabilities``, ``top_k_classes`` and ``top_k_probabilities`` out. The batch
is fixed at 1 (one drawing, as on a phone): Keras' LSTM loops convert to
builtins only with a static batch.

Image models (``sketchanet``, ``alexnet``, ``resnet18``, ``vgg19``): a split.
The in-graph rasteriser needs TensorFlow ops TFLite has no builtin for
(``UpperBound``, the binary search of its row coverage, and ``StridedSlice``
forms), and the interpreters here cannot run TensorFlow (Flex) ops: neither
``tf.lite.Interpreter`` from TF 2.21 nor LiteRT. So the ``.tflite`` has the
SavedModel's ``serving_image`` signature, ``image`` uint8 ``[1, h, w, 1]``
(255 = ink, any size, resized in the graph) in, the same outputs out; the
drawing is rasterised before, by `rasterize` here (the serving graph's own
rasteriser, `raster.rasterize`, at `raster.BITMAP_SIZE`) or by an app drawing
strokes with the same geometry (`raster.render`). ``fusion`` reads both: its
``.tflite`` has the SavedModel's ``serving_ink_image`` signature, ``ink`` and
``length`` as the sequence models' plus ``image`` as the image models', the
image rasterised before in the same way.

The class names, in the order of ``probabilities``, go to
``<output>.classes.txt``. Quantisation (``--quantize``): ``float16`` stores
weights as float16 (dequantised at load), ``int8`` quantises weights to int8
with float activations (dynamic range); neither needs calibration data.

The interpreter is LiteRT's (``pip install quickdraw_tf[litert]``, package
``ai-edge-litert``) when installed, else ``tf.lite.Interpreter`` (deprecated
since TF 2.20, still in 2.21).
"""

import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from quickdraw_tf import cli
from quickdraw_tf import progress
from quickdraw_tf.drawings import raster
from quickdraw_tf.serving import saved_model
from quickdraw_tf.training import run_dir

QUANTIZATIONS = ("none", "float16", "int8")
FLOAT32_MAX = np.finfo(np.float32).max


class TFLiteError(cli.Error, ValueError):
  """A model the TFLite export does not convert; the message says why and what to use instead."""


def signature_for(spec):
  """The serving signature converted for a `models.ModelSpec`: ink, image, or both (fusion)."""
  if spec.uses_ink and spec.uses_image:
    return saved_model.INK_IMAGE_SIGNATURE
  return saved_model.INK_SIGNATURE if spec.uses_ink else saved_model.IMAGE_SIGNATURE


def convert_saved_model(saved_model_dir, signature, quantize="none"):
  """Converts one signature of a serving SavedModel (batch 1) to TFLite builtins.

  Args:
    saved_model_dir: written by `saved_model.export` with ``batch_size=1``.
    signature: one of `saved_model`'s INK_SIGNATURE, IMAGE_SIGNATURE, INK_IMAGE_SIGNATURE.
    quantize: one of `QUANTIZATIONS`.

  Returns:
    the ``.tflite`` flatbuffer, bytes.
  """
  cli.check_choice(quantize, QUANTIZATIONS, "quantisation", TFLiteError)
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[signature])
  if quantize != "none":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # Alone: dynamic-range int8 weights.
  if quantize == "float16":
    converter.target_spec.supported_types = [tf.float16]
  return converter.convert()


def export(model, spec, class_names, output, image_size=None, quantize="none"):
  """Writes ``output`` (.tflite) and ``output.classes.txt`` through a temporary batch-1 serving SavedModel.

  Args: as `saved_model.export`, plus quantize (one of `QUANTIZATIONS`).

  Raises:
    TFLiteError: an unknown quantisation.
  """
  signature = signature_for(spec)
  with tempfile.TemporaryDirectory() as tmp:
    batch_one = os.path.join(tmp, "saved_model")
    saved_model.export(model, spec, class_names, batch_one, image_size, batch_size=1)
    flatbuffer = convert_saved_model(batch_one, signature, quantize)
    shutil.copyfile(os.path.join(batch_one, saved_model.CLASSES_ASSET), output + ".classes.txt")
  partial = output + ".partial"
  with open(partial, "wb") as f:
    f.write(flatbuffer)
  os.replace(partial, output)  # Never a half-written model under the final name.


def interpreter(model_path, num_threads=None):
  """LiteRT's interpreter for a ``.tflite`` file when ai-edge-litert is installed, else tf.lite's."""
  try:
    from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  except ImportError:
    return tf.lite.Interpreter(model_path=model_path, num_threads=num_threads)
  return litert.Interpreter(model_path=model_path, num_threads=num_threads)


@tf.function(input_signature=[tf.TensorSpec([1, None, 3], tf.float32), tf.TensorSpec([1], tf.int32)])
def _rasterize_graph(points, lengths):
  return raster.rasterize(points, lengths, raster.BITMAP_SIZE)  # A graph, as in serving: eager ops are ~10x slower.


def rasterize(points):
  """The image side of the split: points float32 ``[n, 3]`` -> uint8 ``[1, s, s, 1]``, as serving rasterises.

  A drawing that cannot be classified (`classifiable`) gives a blank image.
  """
  points = np.asarray(points, np.float32)
  if not classifiable(points):
    return np.zeros([1, raster.BITMAP_SIZE, raster.BITMAP_SIZE, 1], np.uint8)
  image = _rasterize_graph(points[None], np.array([len(points)], np.int32))
  return np.round(image.numpy() * 255).astype(np.uint8)


def classifiable(points):
  """The serving contract's test (`saved_model.serving_ink`) on the host: at least 2 points, coordinates and
  extent finite in float32. points: float32 ``[n, 3]``."""
  if len(points) < 2:
    return False
  with np.errstate(over="ignore", invalid="ignore"):
    extent = points[:, :2].max(0) - points[:, :2].min(0)
    return bool(np.all(np.abs(points) <= FLOAT32_MAX) and np.all(np.abs(extent) <= FLOAT32_MAX))


class Classifier:
  """One drawing at a time through a ``.tflite`` written by `export`, raw ink in either way.

  Args:
    model_path: the ``.tflite`` file.
    num_threads: interpreter threads (None: its default).

  Attributes:
    interpreter_name: which `interpreter` runs it, "LiteRT" or "tf.lite".
  """

  def __init__(self, model_path, num_threads=None):
    runner = interpreter(model_path, num_threads)
    self.interpreter_name = "LiteRT" if type(runner).__module__.startswith("ai_edge_litert") else "tf.lite"
    self.signature = next(iter(runner.get_signature_list()))
    self.runner = runner.get_signature_runner(self.signature)

  def __call__(self, points):
    """points float32 ``[n, 3]`` -> dict of the signature's outputs, batch row 0 (numpy).

    A drawing that cannot be classified gets what the SavedModel answers: ``valid`` False, zero
    probabilities, empty class names (the image-only graph cannot see it: it is checked here).

    Raises:
      ValueError: points not of shape ``[n, 3]``.
    """
    points = np.asarray(points, np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
      raise ValueError(f"points must be float [n, 3] (x, y, 1 on a stroke's last point), not shape {points.shape}")
    inputs = {}
    if self.signature != saved_model.IMAGE_SIGNATURE:
      inputs.update(ink=points[None], length=np.array([len(points)], np.int32))
    if self.signature != saved_model.INK_SIGNATURE:
      inputs.update(image=rasterize(points))
    outputs = {name: value[0] for name, value in self.runner(**inputs).items()}
    if not classifiable(points):
      outputs.update(valid=np.bool_(False), probabilities=np.zeros_like(outputs["probabilities"]),
                     top_k_probabilities=np.zeros_like(outputs["top_k_probabilities"]),
                     top_k_classes=np.full_like(outputs["top_k_classes"], b""))
    return outputs


def main(model, config, output, quantize):
  """export's ``--format=tflite``: writes ``output``; returns the exit status."""
  from quickdraw_tf import models  # pylint: disable=g-import-not-at-top
  export(model, models.get(config["model"]), config["classes"], output, run_dir.image_size(config), quantize)
  progress.write(f"wrote {output} ({os.path.getsize(output) / 2**20:.1f} MiB) and {output}.classes.txt; run it "
                 "with quickdraw_tf.serving.tflite.Classifier")
  return 0
