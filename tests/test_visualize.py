"""visualize: activations, filters, stroke contributions and projector embeddings of tiny trained models."""

import glob
import json
import os

import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from quickdraw_tf import make_records
from quickdraw_tf import models
from quickdraw_tf import train
from quickdraw_tf import visualize
from quickdraw_tf.figures import conv
from quickdraw_tf.figures import embeddings
from quickdraw_tf.figures import inputs
from quickdraw_tf.figures import strokes
from quickdraw_tf.training import run_dir
from quickdraw_tf.training import summaries
from quickdraw_tf.training import train_config
from tests import verbs

WORDS = ("cat", "bicycle", "fish")
SIZES = {"sketchanet": 64, "rnn": 0, "fusion": 64}


@pytest.fixture(scope="module")
def records_dir(data_dir, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("records"))
  files = [os.path.join(data_dir, "strokes", "simplified_lamnguyen", f"{w}.ndjson") for w in WORDS]
  make_records.convert(files, out, workers=1, progress=False, num_shards=1, eval_fraction=0.2, test_fraction=0.3)
  return out


@pytest.fixture(scope="module")
def model_dirs(records_dir, tmp_path_factory):
  """sketchanet (64 px), rnn and fusion (64 px), each trained for 2 steps of 8 drawings."""
  root = tmp_path_factory.mktemp("runs")
  dirs = {name: str(root / name) for name in SIZES}
  for name, size in SIZES.items():
    train.train(train_config.TrainConfig(name, records_dir, dirs[name], epochs=1, steps_per_epoch=2, eval_steps=1,
                                         batch_size=8, image_size=size, export=False, verbose=0))
  return dirs


@pytest.fixture(scope="module")
def drawings(data_dir, tmp_path_factory):
  """An ndjson file of two real fish drawings and a line that is not a drawing."""
  with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", "fish.ndjson"), encoding="utf-8") as f:
    lines = f.readlines()[:2]
  path = tmp_path_factory.mktemp("input") / "fish.ndjson"
  path.write_text("".join(lines) + '{"drawing": [[[1, 2], [3]]]}\n')
  return str(path)


def _png(path):
  return np.asarray(Image.open(path).convert("RGB"))


def _grid_height(n, side, min_cell=48, title=True, labels=True):
  """`summaries.feature_grid`'s documented height for n maps of side x side."""
  columns = int(np.ceil(np.sqrt(n)))
  rows = -(-n // columns)
  zoom = max(1, -(-min_cell // side))
  return (18 if title else 0) + rows * (side * zoom + (12 if labels else 0) + 2) + 2, columns * (side * zoom + 2) + 2


def _image_tags(log_dir):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  tags = set()
  for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
    accumulator = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
    accumulator.Reload()
    tags |= set(accumulator.Tags()["tensors"])
  return tags


def test_feature_grid_layout_and_per_map_scaling():
  maps = np.zeros((5, 4, 4))
  maps[0, 0, 0] = 1e-3  # A faint map is stretched to its own range.
  maps[1] = 7.0  # Constant maps keep their level within all maps: 7 is the top.
  grid = summaries.feature_grid(maps, title="t", min_cell=12)
  assert grid.shape == (*_grid_height(5, 4, 12), 3) and grid.dtype == np.uint8
  cell = lambda i: grid[18 + 2 + (i // 3) * 26:18 + 2 + (i // 3) * 26 + 12, 2 + (i % 3) * 14:2 + (i % 3) * 14 + 12]
  np.testing.assert_array_equal(cell(0)[0, 0], summaries.colormap(1.0))
  np.testing.assert_array_equal(cell(0)[-1, -1], summaries.colormap(0.0))
  assert (cell(1) == summaries.colormap(1.0)).all() and (cell(2) == summaries.colormap(0.0)).all()


def test_cli_image_model_writes_every_part_and_logs_them(model_dirs, drawings, tmp_path, records_dir):
  model_dir, out = model_dirs["sketchanet"], tmp_path / "out"
  result = verbs.run("visualize", f"--model_dir={model_dir}", f"--input={drawings}", "--index=1", f"--out={out}",
                     "--layers=conv1,conv2", "--max_filters=6", "--filter_steps=8", "--max_embeddings=12")
  assert result.returncode == 0, result.stderr[-3000:]
  model, _ = run_dir.restore(model_dir)
  layers = conv.conv_layers(model)
  assert layers == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
  maps = conv.activations(model, inputs.model_features(
      models.get("sketchanet"), inputs.read_drawing(drawings, 1), 64)["image"], layers)
  for layer in layers:
    side, channels = maps[layer].shape[0], maps[layer].shape[2]
    png = _png(out / f"activations_{layer}.png")
    height, width = _grid_height(channels, side, 48 if side > 1 else 20)
    assert png.shape[0] == height and png.shape[1] >= width, (layer, png.shape)
    assert png.std() > 10, layer
  assert maps["conv1"].shape == (17, 17, 64) and maps["conv1"].std() > 0
  for layer in ("conv1", "conv2"):
    png = _png(out / f"filters_{layer}.png")
    height, width = _grid_height(6, 64, title=True)
    assert png.shape[0] == height and png.shape[1] >= width and png.std() > 10
  assert not os.path.exists(out / "filters_conv3.png")  # Only the chosen layers.
  assert _png(out / "input.png").std() > 10
  tags = _image_tags(os.path.join(model_dir, "logs", "visualize"))
  assert {"input/image", "activations/conv1", "activations/fc7", "filters/conv1", "filters/conv2"} <= tags, tags
  # Embeddings: 12 test drawings in the projector.
  projector = os.path.join(model_dir, "logs", "projector")
  checkpoint = tf.train.load_checkpoint(tf.train.latest_checkpoint(projector))
  assert checkpoint.get_tensor(embeddings.EMBEDDING_TENSOR).shape == (12, 512)  # fc7_flat, the input of logits.
  assert f"projector: tensorboard --logdir {os.path.join(model_dir, 'logs')}" in result.stdout


def test_filter_ascent_increases_each_filters_mean_activation(model_dirs):
  model, _ = run_dir.restore(model_dirs["sketchanet"])
  filters = np.arange(16)
  patterns, before, after = conv.filter_patterns(model, "conv2", filters, steps=10, step_size=0.01, batch=5)
  assert patterns.shape == (16, 64, 64, 1) and before.shape == after.shape == (16,)
  # A filter silent on the grey start has no gradient there (ReLU) and keeps its noise; every other one climbs.
  live = after != before
  np.testing.assert_array_equal(live, before > 0)
  assert live.sum() >= 3
  assert (after[live] > before[live]).all(), (before, after)
  # The recipe's start: grey 128/255 plus noise of up to 20/255.
  start, _, _ = conv.filter_patterns(model, "conv2", filters, steps=0, batch=5)
  assert 128 / 255 <= start.min() and start.max() <= 148 / 255 and start.std() > 0.01
  # Each pattern changed by about steps x step_size in RMS (normalised steps).
  moved = np.sqrt(((patterns - start) ** 2).mean(axis=(1, 2, 3)))
  assert np.all(moved[live] > 0.05) and np.all(moved <= 0.1 + 1e-4)


def test_rnn_step_contributions_add_up_to_the_logits(model_dirs, drawings, tmp_path):
  model, config = run_dir.restore(model_dirs["rnn"])
  drawing = inputs.read_drawing(drawings, 0)
  features = inputs.model_features(models.get("rnn"), drawing)
  contributions, logits, bias = strokes.rnn_contributions(model, features)
  assert contributions.shape == (len(drawing.points) - 1, len(config["classes"]))
  np.testing.assert_allclose(contributions.sum(axis=0), logits - bias, atol=1e-4)
  np.testing.assert_allclose(logits, keras.ops.convert_to_numpy(model(features))[0], atol=1e-5)
  assert contributions.std(axis=0).min() > 0  # Steps differ.
  # Padding the ink does not change them: padded steps contribute nothing.
  padded = {"ink": tf.pad(features["ink"], [[0, 0], [0, 7], [0, 0]]), "ink_length": features["ink_length"]}
  np.testing.assert_allclose(strokes.rnn_contributions(model, padded)[0][:len(contributions)], contributions,
                             atol=1e-5)

  written = visualize.visualize(model_dirs["rnn"], drawings, str(tmp_path), parts=["strokes"])
  with open(tmp_path / "strokes.json") as f:
    report = json.load(f)
  predicted = report["class_index"]
  assert report["kind"] == "contribution" and len(report["step_values"]) == len(drawing.points) - 1
  np.testing.assert_allclose(report["step_values"], contributions[:, predicted], atol=1e-5)
  assert abs(report["sum"] + report["bias"] - report["logit"]) < 1e-4
  png = _png(tmp_path / "strokes.png")
  assert png.shape == (320 + 58, 320, 3) and png.std() > 10
  assert written["strokes"] == [str(tmp_path / "strokes.png"), str(tmp_path / "strokes.json")]
  assert "strokes/contribution" in _image_tags(os.path.join(model_dirs["rnn"], "logs", "visualize"))


def test_fusion_cnn_branch_activations_and_ink_saliency(model_dirs, drawings, tmp_path):
  written = visualize.visualize(model_dirs["fusion"], drawings, str(tmp_path), parts=["activations", "strokes"])
  assert [os.path.basename(p) for p in written["activations"]] == [
      f"activations_{layer}.png" for layer in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")]
  assert all(_png(path).std() > 10 for path in written["activations"] + written["input"])
  with open(tmp_path / "strokes.json") as f:
    report = json.load(f)
  values = np.array(report["step_values"])
  assert report["kind"] == "saliency" and len(values) == len(inputs.read_drawing(drawings).points) - 1
  assert (values >= 0).all() and np.isfinite(values).all() and values.std() > 0
  assert _png(tmp_path / "strokes.png").std() > 10
  # Saliency is the gradient: a step along it moves the logit by about |gradient| x step.
  model, _ = run_dir.restore(model_dirs["fusion"])
  features = inputs.model_features(models.get("fusion"), inputs.read_drawing(drawings), 64)
  saliency = strokes.ink_saliency(model, features, report["class_index"])
  np.testing.assert_allclose(saliency, values, rtol=1e-5)
  with tf.GradientTape() as tape:
    tape.watch(features["ink"])
    logit = model(features)[0, report["class_index"]]
  gradient = tape.gradient(logit, features["ink"])
  epsilon = 1e-2 / float(tf.norm(gradient))
  moved = model({**features, "ink": features["ink"] + epsilon * gradient})[0, report["class_index"]]
  np.testing.assert_allclose(float(moved - logit) / epsilon, float(tf.norm(gradient)) ** 2, rtol=0.1)
  np.testing.assert_allclose(float(tf.norm(gradient)), np.sqrt((saliency ** 2).sum()), rtol=1e-4)


def test_embeddings_for_the_projector(model_dirs, records_dir):
  model_dir = model_dirs["rnn"]
  written = visualize.visualize(model_dir, parts=["embeddings"], max_embeddings=1000)
  projector = os.path.join(model_dir, "logs", "projector")
  with open(os.path.join(records_dir, "stats.json")) as f:
    count = json.load(f)["totals"]["test"]
  assert count > 4 and written["embeddings"][0] == os.path.join(projector, "projector_config.pbtxt")
  checkpoint = tf.train.load_checkpoint(tf.train.latest_checkpoint(projector))
  embedding = checkpoint.get_tensor(embeddings.EMBEDDING_TENSOR)
  assert embedding.shape == (count, 256) and embedding.std() > 0  # BiLSTM 2 x 128, summed over time.
  with open(os.path.join(projector, "metadata.tsv")) as f:
    rows = f.read().splitlines()
  assert rows[0] == "label\tpredicted" and len(rows) - 1 == count
  assert {row.split("\t")[0] for row in rows[1:]} <= set(WORDS)
  sprite = np.asarray(Image.open(os.path.join(projector, "sprite.png")))
  side = int(np.ceil(np.sqrt(count)))
  assert sprite.shape == (28 * side, 28 * side) and sprite.std() > 10
  # TensorBoard's projector plugin finds the embedding, its metadata and sprite.
  from tensorboard.backend.event_processing import data_provider  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import plugin_event_multiplexer  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins import base_plugin  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins.projector import projector_plugin  # pylint: disable=g-import-not-at-top
  logs = os.path.join(model_dir, "logs")
  multiplexer = plugin_event_multiplexer.EventMultiplexer()
  multiplexer.AddRunsFromDirectory(logs)
  multiplexer.Reload()
  plugin = projector_plugin.ProjectorPlugin(base_plugin.TBContext(
      logdir=logs, data_provider=data_provider.MultiplexerDataProvider(multiplexer, logs)))
  plugin._update_configs()  # pylint: disable=protected-access
  (found,) = plugin._configs["projector"].embeddings  # pylint: disable=protected-access
  assert list(found.tensor_shape) == [count, 256]
  assert (found.metadata_path, found.sprite.image_path, list(found.sprite.single_image_dim)) == (
      "metadata.tsv", "sprite.png", [28, 28])


def test_bad_input_is_named(model_dirs, drawings, tmp_path):
  result = verbs.run("visualize", f"--model_dir={tmp_path / 'none'}", f"--input={drawings}")
  assert result.returncode == 1 and f"{tmp_path / 'none'} does not exist" in result.stderr
  with pytest.raises(visualize.VisualizeError, match=r"fish\.ndjson:3: not a QuickDraw drawing"):
    inputs.read_drawing(drawings, 2)
  with pytest.raises(visualize.VisualizeError, match=r"fish\.ndjson holds 3 drawing\(s\); --index=5"):
    inputs.read_drawing(drawings, 5)
  (tmp_path / "bad.ndjson").write_text("not json\n")
  with pytest.raises(visualize.VisualizeError, match=r"bad\.ndjson:1: not a QuickDraw drawing: JSONDecodeError"):
    inputs.read_drawing(str(tmp_path / "bad.ndjson"))
  (tmp_path / "bad.png").write_bytes(b"not a png")
  with pytest.raises(visualize.VisualizeError, match=r"bad\.png: not a readable PNG"):
    inputs.read_drawing(str(tmp_path / "bad.png"))
  picture = 255 - np.zeros((40, 40), np.uint8)
  picture[10:30, 20] = 0
  Image.fromarray(picture).save(tmp_path / "sketch.png")
  with pytest.raises(visualize.VisualizeError, match=r"sketch\.png: model 'rnn' reads strokes"):
    visualize.visualize(model_dirs["rnn"], str(tmp_path / "sketch.png"), str(tmp_path / "o"), parts=["strokes"])
  with pytest.raises(visualize.VisualizeError, match=r"unknown conv layer\(s\) conv9.*valid layers: conv1, conv2, "
                     r"conv3, conv4, conv5, fc6, fc7"):
    visualize.visualize(model_dirs["sketchanet"], str(tmp_path / "sketch.png"), str(tmp_path / "o"),
                        parts=["filters"], layers=["conv1", "conv9"])
  with pytest.raises(visualize.VisualizeError, match="'rnn' has no 2-D convolutions"):
    visualize.visualize(model_dirs["rnn"], drawings, str(tmp_path / "o"), parts=["activations"])
  # Without an input only what needs none; a PNG gives no strokes.
  assert visualize.default_parts(models.get("fusion")) == ["filters", "embeddings"]
  assert visualize.default_parts(models.get("rnn"), inputs.read_drawing(drawings)) == ["strokes", "embeddings"]
  # A PNG is fine for an image model.
  written = visualize.visualize(model_dirs["sketchanet"], str(tmp_path / "sketch.png"), str(tmp_path / "o"),
                                parts=["activations"])
  assert len(written["activations"]) == 7
