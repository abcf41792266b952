"""TFLite export: the interpreter against the SavedModel on real drawings, per model kind and quantisation."""

import os

import numpy as np
import pytest
import tensorflow as tf

from quickdraw_tf import models
from quickdraw_tf.drawings import drawing_files
from quickdraw_tf.serving import saved_model as saved_model_lib
from quickdraw_tf.serving import tflite
from quickdraw_tf.training import run_dir
from tests import verbs

WORDS = ("cat", "snowflake")
PER_WORD = 6
# Largest allowed |p_tflite - p_savedmodel| over classes and drawings: float32 arithmetic reordered; float16
# weights; int8 weights (dynamic range).
TOLERANCE = {"none": 1e-4, "float16": 1e-2, "int8": 5e-2}


def real_points(data_dir):
  points = []
  for word in WORDS:
    path = os.path.join(data_dir, "strokes", "simplified_lamnguyen", f"{word}.ndjson")
    points += [p for _, p in drawing_files.read_ndjson(path)][:PER_WORD]
  return points


def parity(tflite_path, saved_model, drawings):
  """(top-1 agreements, drawings, max |probability difference|) of a .tflite vs its SavedModel."""
  classifier = tflite.Classifier(tflite_path)
  signature = tf.saved_model.load(saved_model).signatures["serving_default"]
  agree, worst = 0, 0.0
  for points in drawings:
    got = classifier(points)["probabilities"]
    want = signature(ink=points[None], length=np.array([len(points)], np.int32))["probabilities"].numpy()[0]
    agree += int(got.argmax() == want.argmax())
    worst = max(worst, float(np.abs(got - want).max()))
  return agree, len(drawings), worst


def test_cli_writes_an_rnn_that_reads_raw_ink_like_the_saved_model(tiny_run, data_dir, tmp_path, record_property):
  model_dir = tiny_run("rnn")
  output = str(tmp_path / "rnn.tflite")
  result = verbs.run("export", f"--model_dir={model_dir}", "--format=tflite", f"--output={output}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"wrote {output}" in result.stdout and not os.path.exists(output + ".partial")
  with open(output + ".classes.txt", encoding="utf-8") as f:
    assert f.read().splitlines() == run_dir.read_config(model_dir)["classes"]
  classifier = tflite.Classifier(output)
  assert classifier.signature == saved_model_lib.INK_SIGNATURE
  record_property("tflite_interpreter", classifier.interpreter_name)  # The run's summary says which (conftest.py).
  agree, total, worst = parity(output, os.path.join(model_dir, run_dir.SAVED_MODEL), real_points(data_dir))
  assert (agree, worst < TOLERANCE["none"]) == (total, True), (agree, total, worst)


@pytest.mark.parametrize("name,quantize", [("rnn", "float16"), ("rnn", "int8"), ("resnet18", "none"),
                                           ("fusion", "none")])
def test_quantised_and_image_models_agree_with_the_saved_model(name, quantize, tiny_run, data_dir, tmp_path):
  model_dir = tiny_run(name)
  model, config = run_dir.restore(model_dir)
  output = str(tmp_path / f"{name}_{quantize}.tflite")
  tflite.export(model, models.get(name), config["classes"], output, config["image_size"] or None, quantize)
  agree, total, worst = parity(output, os.path.join(model_dir, run_dir.SAVED_MODEL), real_points(data_dir))
  print(f"{name} {quantize}: top-1 agreement {agree}/{total}, max probability difference {worst:.2e}")
  assert worst < TOLERANCE[quantize], worst
  if quantize != "int8":  # int8 may flip near-ties of a 2-step model; its probabilities stay close (above).
    assert agree == total
  if quantize == "int8":  # Weights stored in 8 bits: well under half the float32 file.
    float_size = sum(w.numpy().nbytes for w in model.weights)
    assert os.path.getsize(output) < 0.5 * float_size


def test_every_classifier_has_a_signature_and_unknown_quantisations_say_why():
  with pytest.raises(tflite.TFLiteError, match="float16, int8"):
    tflite.convert_saved_model("unused", saved_model_lib.INK_SIGNATURE, "int4")
  assert tflite.signature_for(models.get("bilstm")) == saved_model_lib.INK_SIGNATURE
  assert tflite.signature_for(models.get("vgg19")) == saved_model_lib.IMAGE_SIGNATURE
  assert tflite.signature_for(models.get("fusion")) == saved_model_lib.INK_IMAGE_SIGNATURE


def test_the_host_side_keeps_the_serving_contract_for_drawings_that_cannot_be_classified(tiny_run, tmp_path):
  """The image-only graph cannot see a bad drawing (its rasteriser runs here): the Classifier answers as the
  SavedModel does, valid False and zeros; a wrong shape is a ValueError."""
  model, config = run_dir.restore(tiny_run("resnet18"))
  output = str(tmp_path / "resnet18.tflite")
  tflite.export(model, models.get("resnet18"), config["classes"], output, config["image_size"] or None)
  classifier = tflite.Classifier(output)
  for points in (np.zeros((0, 3)), [[1.0, 2.0, 1.0]], [[0, 0, 0], [np.nan, 1, 1]], [[0, 0, 0], [np.inf, 1, 1]],
                 [[3e38, 0, 0], [-3e38, 1, 1]]):  # Finite points whose extent is not.
    out = classifier(points)
    assert not out["valid"] and not out["probabilities"].any() and not out["top_k_probabilities"].any()
    assert (out["top_k_classes"] == b"").all()
  good = classifier([[0, 0, 0], [10, 10, 0], [20, 0, 1]])
  assert good["valid"] and good["probabilities"].sum() == pytest.approx(1.0, abs=1e-5)
  with pytest.raises(ValueError, match=r"points must be float \[n, 3\]"):
    classifier([[1, 2], [3, 4]])
