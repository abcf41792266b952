r"""python -m quickdraw_tf.visualize: what a trained model sees.

  python -m quickdraw_tf.visualize --model_dir=runs/sketchanet --input=drawings.ndjson --index=3
  python -m quickdraw_tf.visualize --model_dir=runs/resnet18 --input=sketch.png --parts=activations
  python -m quickdraw_tf.visualize --model_dir=runs/rnn --input=drawings.ndjson --parts=strokes,embeddings

Writes into ``--out`` (default ``<model_dir>/visualize``), and logs the same
pictures with ``tf.summary.image`` to ``<model_dir>/logs/visualize``:
  activations_<layer>.png  every feature map of each conv layer for the drawing
                           (image models and fusion's CNN branch)
  filters_<layer>.png      per filter, the input that maximises its mean
                           activation: gradient ascent from a grey image with
                           light noise, each step the gradient divided by its
                           RMS plus 1e-5 (the visualisation report, section 4.2)
  strokes.png, strokes.json  sequence models: the drawing coloured per point;
                           for ``rnn``, whose logits are a dense layer over the
                           sum of the BiLSTM outputs over time, each step's
                           exact contribution ``W_c . h_t`` to the predicted
                           class c (blue negative, red positive); for
                           ``bilstm`` and ``fusion``, gradient saliency
                           ``|d logit_c / d ink|``
  input.png                the model's input image (image models)
Embeddings go to ``<model_dir>/logs/projector`` for
TensorBoard's projector: the penultimate features (the input of the
``logits`` layer) of up to ``--max_embeddings`` drawings of a records split,
with their labels and a sprite of the drawings at 28 px.

  tensorboard --logdir runs/rnn/logs   # IMAGES: visualize/...; PROJECTOR: projector

Each kind of figure is a module of `quickdraw_tf.figures`; this module picks the parts, runs them and
writes what they draw.
"""

import dataclasses
import json
import os
import sys

from absl import flags
import keras
import numpy as np
import tensorflow as tf

from quickdraw_tf import cli
from quickdraw_tf import models
from quickdraw_tf import progress
from quickdraw_tf.figures import conv
from quickdraw_tf.figures import embeddings
from quickdraw_tf.figures.inputs import Drawing
from quickdraw_tf.figures.inputs import VisualizeError
from quickdraw_tf.figures.inputs import model_features
from quickdraw_tf.figures.inputs import read_drawing
from quickdraw_tf.figures.strokes import stroke_picture
from quickdraw_tf.figures.strokes import stroke_values
from quickdraw_tf.training import run_dir
from quickdraw_tf.training import summaries

# The verb's names, and the figures' that callers (the demo page) take from here.
__all__ = ["PARTS", "Options", "VisualizeError", "visualize", "default_parts", "define_flags", "main", "Drawing",
           "model_features", "read_drawing", "stroke_picture", "stroke_values"]

PARTS = ("activations", "filters", "strokes", "embeddings")
LOG_SUBDIR = os.path.join("logs", "visualize")
PROJECTOR_SUBDIR = os.path.join("logs", "projector")


def default_parts(spec, drawing=None):
  """The parts that apply to a model and an input (`Drawing` or None).

  Image models and fusion: activations (of the drawing) and filters; models
  reading ink: strokes (of a vector drawing); all: embeddings.
  """
  parts = []
  if spec.uses_image:
    parts += ["activations", "filters"] if drawing is not None else ["filters"]
  if spec.uses_ink and drawing is not None and drawing.points is not None:
    parts.append("strokes")
  return parts + ["embeddings"]


def _file_name(path):
  return path.replace("/", "_")


@dataclasses.dataclass(frozen=True)
class Options:
  """What to draw and how (visualize's flags); see `visualize`."""
  index: int = 0
  parts: tuple = ()
  layers: tuple = ()
  max_filters: int = 64
  filter_steps: int = 40
  filter_step_size: float = 0.01
  records_dir: str = None
  split: str = "test"
  max_embeddings: int = 1000
  weights: str = None
  seed: int = 0
  progress: str = "lines"  # cli.PROGRESS_MODES, for the embeddings


@dataclasses.dataclass
class _Run:
  """A restored model and what one visualize call shares between its parts."""
  model: keras.Model
  spec: models.ModelSpec
  config: dict
  drawing: Drawing = None
  features: dict = None  # the drawing as the model reads it
  predicted: int = None  # its top class


class _Output:
  """Writes a part's pictures into ``out_dir`` and TensorBoard (step ``index``); remembers what it wrote."""

  def __init__(self, model_dir, out_dir, index):
    self.out_dir, self.index = out_dir, index
    os.makedirs(out_dir, exist_ok=True)
    self.writer = tf.summary.create_file_writer(os.path.join(model_dir, LOG_SUBDIR))
    self.written = {}

  def save(self, part, name, picture, tag):
    """Writes ``picture`` (uint8 ``[h, w, 3]``) as ``<name>.png`` and as TensorBoard image ``<part>/<tag>``."""
    path = os.path.join(self.out_dir, f"{name}.png")
    summaries.save_png(picture, path)
    with self.writer.as_default(step=self.index):
      tf.summary.image(f"{part}/{tag}", picture[None])
    self.written.setdefault(part, []).append(path)


def visualize(model_dir, input_path=None, out_dir=None, **options):
  """Runs the chosen visualisations of a trained model; see the module docstring for what is written.

  Args:
    model_dir: written by train.
    input_path: ndjson drawings or a PNG (needed for activations and strokes).
    out_dir: PNG directory (default ``<model_dir>/visualize``).
    **options: `Options`: ``index`` (which drawing of an ndjson file,
      0-based; also the TensorBoard step), ``parts`` (subset of `PARTS`,
      default `default_parts`), ``layers`` (conv layers for filters, default
      all of `conv_layers`), ``max_filters`` (the first this many filters of
      each layer), ``filter_steps`` and ``filter_step_size``
      (`filter_patterns`), ``records_dir`` and ``split`` (for embeddings,
      default the records the model was trained on), ``max_embeddings``,
      ``weights`` (default best, else final), ``seed`` (the filters' noise),
      ``progress`` (`embeddings`').

  Returns:
    dict part -> list of written file paths (``strokes`` also gives its
    values in ``strokes.json``).
  """
  options = Options(**{**options, "parts": tuple(options.get("parts") or ()),
                       "layers": tuple(options.get("layers") or ())})
  run = _restore(model_dir, options.weights)
  run.drawing = read_drawing(input_path, options.index) if input_path else None
  parts, records_dir = _check_parts(run, options)
  if run.drawing is not None:
    run.features = model_features(run.spec, run.drawing, run_dir.image_size(run.config))  # Checks it fits.
    if "strokes" in parts and run.drawing.points is None:
      raise VisualizeError(f"{run.drawing.where}: strokes need a vector drawing (ndjson), not a PNG")
  output = _Output(model_dir, out_dir or os.path.join(model_dir, "visualize"), options.index)  # Checked: write.
  if run.features is not None:
    _write_input(run, output)
  for part in parts:
    PART_WRITERS[part](run, options, output, records_dir=records_dir, model_dir=model_dir)
  output.writer.flush()
  return output.written


def _restore(model_dir, weights):
  if not os.path.isdir(model_dir):
    raise VisualizeError(f"model_dir {model_dir} does not exist: train a model first (python -m quickdraw_tf.train)")
  try:
    model, config = run_dir.restore(model_dir, weights)
  except FileNotFoundError as e:
    raise VisualizeError(str(e)) from None
  return _Run(model, models.get(config["model"]), config)


def _check_parts(run, options):
  """(the parts to draw, the records for embeddings); VisualizeError for what cannot be drawn."""
  spec, drawing = run.spec, run.drawing
  parts = list(options.parts or default_parts(spec, drawing))
  unknown = [p for p in parts if p not in PARTS]
  if unknown:
    raise VisualizeError(f"unknown part(s) {', '.join(unknown)}; valid: {', '.join(PARTS)}")
  if ("activations" in parts or "filters" in parts) and not conv.conv_layers(run.model):
    raise VisualizeError(f"model {spec.name!r} has no 2-D convolutions: activations and filters are for image "
                         "models and fusion; use --parts=strokes,embeddings")
  if "strokes" in parts and not spec.uses_ink:
    raise VisualizeError(f"model {spec.name!r} reads images only: strokes are for sequence models")
  if options.layers:
    conv.check_layers(run.model, options.layers)
  needs_input = [p for p in parts if p in ("activations", "strokes")]
  if needs_input and drawing is None:
    raise VisualizeError(f"--input is needed for {', '.join(needs_input)}")
  records_dir = options.records_dir or run.config.get("records")
  if "embeddings" in parts and not (records_dir and tf.io.gfile.isdir(records_dir)):  # gs:// too.
    if options.parts or records_dir != run.config.get("records"):
      raise VisualizeError(f"records {records_dir!r} not found: pass --records=DIR for the embeddings")
    progress.write(f"visualize: no embeddings: the records {records_dir} this model was trained on are not here "
                   "(--records=DIR)", sys.stderr)
    parts.remove("embeddings")
  return parts, records_dir


def _write_input(run, output):
  """The model's answer for the drawing (``run.predicted``) and, for image models, the image it read."""
  logits = keras.ops.convert_to_numpy(run.model(run.features, training=False))[0]
  run.predicted = int(np.argmax(logits))
  caption = f"{run.config['classes'][run.predicted]} {tf.nn.softmax(logits).numpy()[run.predicted]:.2f}"
  if "image" in run.features:
    output.save("input", "input", summaries.drawing_grid(run.features["image"].numpy(), [caption], columns=1),
                "image")


def _write_activations(run, options, output, **unused):
  del options, unused
  for path, maps in conv.activations(run.model, run.features["image"], conv.conv_layers(run.model)).items():
    title = f"{path}: {maps.shape[2]} maps {maps.shape[0]}x{maps.shape[1]}"
    cell = 48 if maps.shape[0] * maps.shape[1] > 1 else 20  # 1x1 maps (fully connected as conv): small cells.
    output.save("activations", f"activations_{_file_name(path)}",
                summaries.feature_grid(np.moveaxis(maps, 2, 0), title, min_cell=cell), path)


def _write_filters(run, options, output, **unused):
  del unused
  for path in options.layers or conv.conv_layers(run.model):
    channels = conv.image_model(run.model, [path]).outputs[0].shape[-1]
    patterns, before, after = conv.filter_patterns(run.model, path, np.arange(min(options.max_filters, channels)),
                                              options.filter_steps, options.filter_step_size, options.seed)
    # A filter silent on the grey start gets no gradient: it keeps its noise, which the grid stretches.
    silent = after == before
    title = (f"{path}: {len(patterns)} of {channels} filters, mean activation {before.mean():.3g} -> "
             f"{after.mean():.3g}; {silent.sum()} silent (no gradient: noise kept)")
    labels = [f"{i} silent" if quiet else str(i) for i, quiet in enumerate(silent)]
    output.save("filters", f"filters_{_file_name(path)}",
                summaries.feature_grid(patterns[..., 0], title, colour=False, labels=labels), path)


def _write_strokes(run, options, output, **unused):
  del options, unused
  class_names = run.config["classes"]
  values, title, kind, signed, extra = stroke_values(run.model, run.spec, run.features, run.predicted, class_names)
  output.save("strokes", "strokes", stroke_picture(run.drawing.points, values, title, signed), kind)
  path = os.path.join(output.out_dir, "strokes.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump({"input": run.drawing.where, "model": run.spec.name, "kind": kind,
               "class": class_names[run.predicted], "class_index": run.predicted,
               "step_values": [float(v) for v in values], **extra}, f, indent=1)
  output.written["strokes"].append(path)


def _write_embeddings(run, options, output, records_dir, model_dir):
  result = embeddings.embeddings(run.model, run.spec, records_dir, options.split, options.max_embeddings,
                      run_dir.image_size(run.config), progress=options.progress)
  log_dir = os.path.join(model_dir, PROJECTOR_SUBDIR)
  embeddings.write_projector(log_dir, *result, run.config["classes"])
  output.written["embeddings"] = [os.path.join(log_dir, name)
                                  for name in ("projector_config.pbtxt", "metadata.tsv", "sprite.png")]


# What each part draws, in the order of PARTS.
PART_WRITERS = {"activations": _write_activations, "filters": _write_filters, "strokes": _write_strokes,
                "embeddings": _write_embeddings}


FLAGS = flags.FLAGS


def define_flags():
  """visualize's flags: the run, the drawing, the parts and their settings."""
  cli.define_model_dir()
  cli.define_input("An ndjson file of drawings, or a PNG of one drawing (image models).")
  flags.DEFINE_integer("index", 0, "Which drawing of the ndjson file (0-based); also the TensorBoard step.",
                       lower_bound=0)
  flags.DEFINE_string("out", None, "Where the PNGs go (default <model_dir>/visualize).")
  flags.DEFINE_list("parts", [], f"Any of {', '.join(PARTS)} (default: all that apply to the model).")
  flags.DEFINE_list("layers", [], "Conv layers for filters (default: all); unknown names list the valid ones.")
  flags.DEFINE_integer("max_filters", 64, "Filters per layer (the first ones).", lower_bound=1)
  flags.DEFINE_integer("filter_steps", 40, "Gradient ascent steps per filter.", lower_bound=0)
  flags.DEFINE_float("filter_step_size", 0.01, "Gradient ascent step, in image units ([0, 1]) per normalised step.")
  cli.define_records(help_text="Records for embeddings (default: those in the model_dir's config.json).")
  flags.DEFINE_string("split", "test", "Records split for embeddings.")
  flags.DEFINE_integer("max_embeddings", 1000, "Drawings in the projector.", lower_bound=1)
  cli.define_weights()
  flags.DEFINE_integer("seed", 0, "Seed of the filters' starting noise.")
  cli.define_progress()
  flags.mark_flags_as_required(["model_dir"])


def main(_):
  """Runs `visualize` as the flags say; prints each written file (stdout)."""
  written = visualize(FLAGS.model_dir, FLAGS.input, FLAGS.out, index=FLAGS.index, parts=FLAGS.parts,
                      layers=FLAGS.layers, max_filters=FLAGS.max_filters, filter_steps=FLAGS.filter_steps,
                      filter_step_size=FLAGS.filter_step_size, records_dir=FLAGS.records, split=FLAGS.split,
                      max_embeddings=FLAGS.max_embeddings, weights=FLAGS.weights, seed=FLAGS.seed,
                      progress=FLAGS.progress)
  for part, paths in written.items():
    for path in paths:
      progress.write(f"{part}: {path}")
  if "embeddings" in written:
    progress.write(f"projector: tensorboard --logdir {os.path.join(FLAGS.model_dir, 'logs')}")


if __name__ == "__main__":
  cli.run(define_flags, main)
