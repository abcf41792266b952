r"""python -m quickdraw_tf.generate: drawings from a trained Sketch-RNN.

  python -m quickdraw_tf.generate --model_dir=runs/sketch_rnn --mode=sample --num=16 --output=out
  python -m quickdraw_tf.generate --model_dir=runs/sketch_rnn --mode=reconstruct --input=cats.ndjson --output=out
  python -m quickdraw_tf.generate --model_dir=runs/sketch_rnn --mode=interpolate --input=two.ndjson --output=out
  python -m quickdraw_tf.generate --model_dir=runs/sketch_rnn --mode=complete --input=cat.ndjson --output=out

Modes (the notes' section 4):
  sample       --num drawings from random z (or the unconditional decoder).
  reconstruct  every --input drawing encoded (its mean latent) and decoded at
               each --temperature (default 0.01, 0.2, 0.5, 0.8, 1.0: the notes' 4.1).
  interpolate  --num latents on the great circle between the first two
               --input drawings' (spherical interpolation, 4.2/4.3), decoded.
  complete     the first --prefix_strokes strokes of the first --input drawing
               (default: half of them), then --num sampled endings (4.4).
Writes into --output ``<mode>.ndjson`` (Google's simplified format: one
``{"word", "key_id", "recognized", "drawing": [[xs], [ys]], ...}`` a line,
integer coordinates in 0-255, readable by predict and make_records),
``<mode>.png`` and ``<mode>.svg`` (grids drawn with `raster`). The same
--seed gives the same drawings.
"""

import json
import math
import os

from absl import flags
import numpy as np
import tensorflow as tf

from quickdraw_tf import cli
from quickdraw_tf import models
from quickdraw_tf import progress
from quickdraw_tf.drawings import drawing_files
from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.drawings import raster
from quickdraw_tf.models import sketch_rnn
from quickdraw_tf.pipelines import sketch_rnn_data
from quickdraw_tf.training import run_dir
from quickdraw_tf.training import sketch_rnn_train
from quickdraw_tf.training import summaries

MODES = ("sample", "reconstruct", "interpolate", "complete")
RECONSTRUCT_TEMPERATURES = (0.01, 0.2, 0.5, 0.8, 1.0)
DEFAULT_TEMPERATURE = 0.5
SVG_CELL = 128


class GenerateError(cli.Error):
  """A problem the user can act on; the message is one line."""


def load(model_dir):
  """(SketchRNN, config) of a sketch-rnn model_dir; GenerateError for anything else."""
  try:
    config = run_dir.read_config(model_dir)
  except FileNotFoundError as e:
    raise GenerateError(str(e)) from None
  if models.get(config["model"]).trainer != sketch_rnn_train.__name__:
    raise GenerateError(f"{model_dir} holds a {config['model']!r} classifier, which cannot draw: give the model_dir "
                        "of python -m quickdraw_tf.train --model=sketch_rnn (or sketch_rnn_uncond)")
  try:
    return run_dir.restore(model_dir)
  except FileNotFoundError as e:
    raise GenerateError(str(e)) from None


def read_drawings(path, max_seq_len):
  """An ndjson file -> list of (where "file:line", points float32 [n, 3], word); GenerateError on a bad line."""
  drawings = []
  try:
    for number, points in drawing_files.read_ndjson(path):
      where = f"{path}:{number}"
      if isinstance(points, str):
        raise GenerateError(f"{where}: not a drawing: {points}")
      if len(points) - 1 > max_seq_len:
        raise GenerateError(f"{where}: {len(points) - 1} stroke-5 rows, more than the model's max_seq_len "
                            f"{max_seq_len}: simplify the drawing (Google's simplified format) or shorten it")
      drawings.append((where, points))
  except (OSError, UnicodeDecodeError) as e:
    raise GenerateError(f"cannot read {path}: {e}") from None
  if not drawings:
    raise GenerateError(f"{path} holds no drawings")
  return drawings


def encode(model, drawings):
  """list of points -> mean latents float32 ``[n, N_z]`` (`sketch_rnn_data.points_to_stroke5`, then the encoder)."""
  padded = np.zeros((len(drawings), max(len(p) for p in drawings), 3), np.float32)
  for i, points in enumerate(drawings):
    padded[i, :len(points)] = points
  strokes, rows = sketch_rnn_data.points_to_stroke5(padded, [len(p) for p in drawings], model.hparams.scale_factor)
  return model.encode(strokes, rows)[0]


def generate(model, mode, drawings, num, temperatures, seed, prefix_strokes=0):
  """The mode's drawings: list of (title, model-unit stroke-5 [t, 5], length)."""
  hp = model.hparams
  seed = tf.constant([seed, 0], tf.int32)
  if mode != "sample" and not drawings:
    raise GenerateError(f"--mode={mode} needs --input=FILE (ndjson drawings)")
  if mode in ("reconstruct", "interpolate") and not hp.conditional:
    raise GenerateError(f"--mode={mode} needs an encoder: this model is unconditional (sketch_rnn_uncond)")
  out = []
  if mode == "sample":
    strokes, length = sketch_rnn.sample_prior(model, num, temperatures[0], seed, hp.max_seq_len)
    out += [(f"tau {temperatures[0]:g}", s, n) for s, n in zip(strokes.numpy(), length.numpy())]
  elif mode == "reconstruct":
    mu = encode(model, [points for _, points in drawings])
    for tau in temperatures:
      strokes, length = sketch_rnn.sample(model, mu, tau, seed, hp.max_seq_len)
      out += [(f"tau {tau:g}", s, n) for s, n in zip(strokes.numpy(), length.numpy())]
  elif mode == "interpolate":
    if len(drawings) < 2:
      raise GenerateError(f"--mode=interpolate needs two drawings in {drawings[0][0].rsplit(':', 1)[0]}")
    mu = encode(model, [drawings[0][1], drawings[1][1]])
    z = sketch_rnn.slerp(mu[0], mu[1], np.linspace(0.0, 1.0, num))
    strokes, length = sketch_rnn.sample(model, z, temperatures[0], seed, hp.max_seq_len)
    out += [(f"{f:.2f}", s, n) for f, s, n in zip(np.linspace(0.0, 1.0, num), strokes.numpy(), length.numpy())]
  else:
    out += complete(model, drawings[0][1], num, temperatures[0], seed, prefix_strokes)
  return out


def complete(model, points, num, temperature, seed, prefix_strokes=0):
  """``num`` endings of the first strokes of ``points`` (half of them by default)."""
  strokes = ink_lib.points_to_strokes(points)
  keep = prefix_strokes or max(1, len(strokes) // 2)
  prefix_points = points[:sum(len(xs) for xs, _ in strokes[:keep])]
  if len(prefix_points) < 2:
    raise GenerateError("the kept strokes have a single point: keep more with --prefix_strokes")
  prefix, rows = sketch_rnn_data.points_to_stroke5(prefix_points[None], [len(prefix_points)],
                                                   model.hparams.scale_factor)
  latent_seed, stroke_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  z = tf.random.stateless_normal([num, model.latent_size], latent_seed)
  drawn, length = sketch_rnn.sample(model, z, temperature, stroke_seed, model.hparams.max_seq_len,
                                    prefix=tf.tile(prefix, [num, 1, 1]), prefix_length=tf.tile(rows, [num]),
                                    batch_size=num)
  return [(f"ending {i + 1}", s, n) for i, (s, n) in enumerate(zip(drawn.numpy(), length.numpy()))]


def to_record(points, word, key_id, extra):
  """Points in the 0-255 frame -> one line of Google's simplified ndjson (integer coordinates)."""
  drawing = [[[int(v) for v in np.rint(xs)], [int(v) for v in np.rint(ys)]]
             for xs, ys in ink_lib.points_to_strokes(points)]
  return json.dumps({"word": word, "countrycode": "", "timestamp": "", "recognized": False, "key_id": key_id,
                     "drawing": drawing, **extra})


def svg_grid(point_sets, columns=8):
  """One SVG of drawings (`raster.to_svg` cells, white ink on dark squares)."""
  rows = -(-len(point_sets) // columns)
  cells = [raster.to_svg(points, SVG_CELL).replace("<svg ", f'<svg x="{(i % columns) * SVG_CELL}" '
                                                   f'y="{(i // columns) * SVG_CELL}" ', 1)
           for i, points in enumerate(point_sets) if points is not None]
  width, height = columns * SVG_CELL, rows * SVG_CELL
  return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
          f'<rect width="{width}" height="{height}" fill="#222"/>{"".join(cells)}</svg>')


def _write_atomically(path, write):
  partial = f"{path}.partial{os.path.splitext(path)[1]}"
  write(partial)
  os.replace(partial, path)


def _write_text(text):
  def write(path):
    with open(path, "w", encoding="utf-8") as f:
      f.write(text)
  return write


def write_outputs(model, config, mode, results, output_dir, seed):
  """``<mode>.ndjson``, ``.png`` and ``.svg`` in ``output_dir``; returns their paths."""
  os.makedirs(output_dir, exist_ok=True)
  classes = config["classes"]
  word = classes[0] if len(classes) == 1 else "+".join(classes)
  titles, strokes, lengths = zip(*results)
  point_sets = [sketch_rnn_data.stroke5_to_points(s, n, model.hparams.scale_factor) for s, n in zip(strokes, lengths)]
  lines = [to_record(points, word, f"{mode}-{seed}-{i}", {"title": title, "model": config["model"]})
           for i, (title, points) in enumerate(zip(titles, point_sets)) if points is not None]
  paths = [os.path.join(output_dir, f"{mode}.{ext}") for ext in ("ndjson", "png", "svg")]
  _write_atomically(paths[0], _write_text("".join(line + "\n" for line in lines)))
  grid = sketch_rnn_train.render_grid(model, strokes, lengths, titles, size=64)
  _write_atomically(paths[1], lambda path: summaries.save_png(grid, path))
  _write_atomically(paths[2], _write_text(svg_grid(point_sets)))
  return paths


def written_message(results, paths):
  """What `write_outputs` wrote: the drawings in the ndjson, and why any result is not among them."""
  empty = sum(1 for _, _, length in results if not length)
  note = (f" ({empty} of the {len(results)} ended at their first step, with no stroke to write: the ndjson and svg "
          "leave them out, the png shows an empty cell; another --seed or a larger --num gives more)") if empty else ""
  written = len(results) - empty
  return f"wrote {written} drawing{'' if written == 1 else 's'}{note}: {', '.join(paths)}"


FLAGS = flags.FLAGS


def define_flags():
  """Defines generate's flags: --model_dir and --output (required), --mode, --input, --num, --temperature, ..."""
  flags.DEFINE_string("model_dir", None, "A model_dir written by train --model=sketch_rnn (or sketch_rnn_uncond).")
  flags.DEFINE_enum("mode", "sample", list(MODES), "What to draw.")
  flags.DEFINE_string("input", None, "ndjson drawings (reconstruct, interpolate, complete).")
  flags.DEFINE_integer("num", 8, "Drawings (sample), steps (interpolate) or endings (complete).", lower_bound=1)
  flags.DEFINE_list("temperature", None, f"Temperature(s) tau (default {DEFAULT_TEMPERATURE}; reconstruct: "
                    f"{','.join(map(str, RECONSTRUCT_TEMPERATURES))}).")
  flags.DEFINE_integer("seed", 0, "Random seed: the same seed draws the same drawings.")
  flags.DEFINE_integer("prefix_strokes", 0, "complete: strokes kept (0: half).", lower_bound=0)
  flags.DEFINE_string("output", None, "Output directory.")
  flags.mark_flags_as_required(["model_dir", "output"])


def main(_):
  """Draws as --mode says with the Sketch-RNN of --model_dir; writes the drawings under --output, says how many."""
  try:
    temperatures = [float(t) for t in FLAGS.temperature] if FLAGS.temperature else (
        list(RECONSTRUCT_TEMPERATURES) if FLAGS.mode == "reconstruct" else [DEFAULT_TEMPERATURE])
    if not all(math.isfinite(t) and t > 0 for t in temperatures):
      raise GenerateError(f"--temperature must be finite and positive, got {','.join(FLAGS.temperature)}")
    model, config = load(FLAGS.model_dir)
    drawings = read_drawings(FLAGS.input, model.hparams.max_seq_len) if FLAGS.input else []
    results = generate(model, FLAGS.mode, drawings, FLAGS.num, temperatures, FLAGS.seed, FLAGS.prefix_strokes)
  except ValueError as e:
    raise GenerateError(str(e)) from None
  paths = write_outputs(model, config, FLAGS.mode, results, FLAGS.output, FLAGS.seed)
  progress.write(written_message(results, paths))


if __name__ == "__main__":
  cli.run(define_flags, main)
