"""Sketch-RNN's SavedModel: encode, decode and sample, with no need for quickdraw_tf to load it.

Signatures (all in the simplified frame's pixels; the run's scale factor is
inside the graph):
  encode(points float32 [b, n, 3], length int32 [b]) -> mu, sigma_hat float32 [b, N_z]
      absolute x, y and stroke-end bit, any scale (fitted to the 0-255 frame).
  decode(z float32 [b, N_z], temperature float32 [], seed int32 [2], max_len int32 [])
      -> strokes float32 [b, max_len, 5] stroke-5, length int32 [b]
  sample(num int32 [], temperature, seed, max_len) -> strokes, length
      z ~ N(0, I) then decode; the same seed gives the same drawings as
      `models.sketch_rnn.sample_prior` on the Keras model.
The unconditional model has ``sample`` only. ``assets/sketch_rnn.json`` holds
the hyper-parameters (scale factor, max_seq_len, N_z).

  loaded = tf.saved_model.load("runs/sketch_rnn/saved_model")
  out = loaded.signatures["sample"](num=tf.constant(4), temperature=tf.constant(0.5),
                                    seed=tf.constant([1, 2]), max_len=tf.constant(250))
"""

import dataclasses
import json
import os

import keras
import tensorflow as tf

from quickdraw_tf.models import sketch_rnn
from quickdraw_tf.pipelines import sketch_rnn_data
from quickdraw_tf.serving import saved_model

HPARAMS_ASSET = os.path.join("assets", "sketch_rnn.json")


def to_pixels(strokes, scale_factor):
  """Model-unit stroke-5 -> offsets in pixels."""
  return tf.concat([strokes[..., :2] * scale_factor, strokes[..., 2:]], axis=-1)


def export(model, output_dir):
  """Writes the SavedModel of a built `SketchRNN` (atomically, with `saved_model.write_archive`)."""
  hp = model.hparams
  scalar = lambda dtype, name: tf.TensorSpec([], dtype, name=name)  # pylint: disable=unnecessary-lambda-assignment
  drawing_args = [scalar(tf.float32, "temperature"), tf.TensorSpec([2], tf.int32, name="seed"),
                  scalar(tf.int32, "max_len")]

  def drawn(strokes, length):
    return {"strokes": to_pixels(strokes, hp.scale_factor), "length": length}

  def sample(num, temperature, seed, max_len):
    return drawn(*sketch_rnn.sample_prior(model, num, temperature, seed, max_len))

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint("sample", sample, input_signature=[scalar(tf.int32, "num")] + drawing_args)
  if hp.conditional:

    def encode(points, length):
      strokes, rows = sketch_rnn_data.points_to_stroke5(points, length, hp.scale_factor)
      mu, sigma_hat = model.encode(strokes, rows)
      return {"mu": mu, "sigma_hat": sigma_hat}

    def decode(z, temperature, seed, max_len):
      return drawn(*sketch_rnn.sample(model, z, temperature, seed, max_len))

    archive.add_endpoint("encode", encode, input_signature=[tf.TensorSpec([None, None, 3], tf.float32, name="points"),
                                                             tf.TensorSpec([None], tf.int32, name="length")])
    archive.add_endpoint("decode", decode, input_signature=[
        tf.TensorSpec([None, hp.latent_size], tf.float32, name="z")] + drawing_args)
  saved_model.write_archive(archive, output_dir, {HPARAMS_ASSET: json.dumps(dataclasses.asdict(hp), indent=1)})
