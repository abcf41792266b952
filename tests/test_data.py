"""data.py: pipelines from records to model inputs, TF ink ops, distribution."""

import collections
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from quickdraw_tf import make_records
from quickdraw_tf import models
from quickdraw_tf.drawings import ink
from quickdraw_tf.pipelines import data
from quickdraw_tf.pipelines import records

WORDS = ("cat", "bicycle", "fish", "zebra")


@pytest.fixture(scope="module")
def records_dir(synthetic_files, tmp_path_factory):
  """Made-up drawings of four words (`tests.synthetic`), with stored 28-px images."""
  out = tmp_path_factory.mktemp("records")
  make_records.convert(synthetic_files(WORDS), str(out), workers=1, image_size=28, progress=False, eval_fraction=0.2,
                       test_fraction=0.2)
  return str(out)


@pytest.fixture(scope="module")
def bitmap_records_dir(data_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("bitmaps")
  bitmaps = np.load(os.path.join(data_dir, "bitmaps28", "numpy_bitmap_prefix", "zebra.npy"))[:40]
  np.save(out / "zebra.npy", bitmaps)
  make_records.convert([str(out / "zebra.npy")], str(out / "records"), workers=1, progress=False)
  return str(out / "records")


def _first(dataset):
  return next(iter(dataset))


@pytest.mark.parametrize("name, expect, image_source", [
    ("rnn", {"ink": 3, "ink_length": None}, "auto"),
    ("bilstm", {"ink": 5, "ink_length": None}, "auto"),
    ("sketchanet", {"image": 225}, "raster"),
    ("alexnet", {"image": 225}, "stored"),
    ("resnet18", {"image": 28}, "stored"),
    ("resnet18", {"image": 28}, "raster"),
    ("vgg19", {"image": 64}, "raster"),
    ("fusion", {"image": 225, "ink": 5, "ink_length": None}, "stored"),
    ("fusion", {"image": 225, "ink": 5, "ink_length": None}, "raster"),
])
def test_batches_have_the_model_inputs(records_dir, name, expect, image_source):
  """Every model's pipeline at its default input size, from stored images and from rasterised ink."""
  spec = models.get(name)
  features, labels = _first(data.make_dataset(records_dir, "train", spec, 8, deterministic=True,
                                              image_source=image_source))
  assert set(features) == set(expect)
  assert labels.dtype == tf.int64 and labels.shape == (8,)
  if "ink" in expect:
    assert features["ink"].dtype == tf.float32 and features["ink"].shape[-1] == expect["ink"]
    assert features["ink_length"].dtype == tf.int32 and features["ink_length"].shape == (8,)
    assert features["ink"].shape[1] == max(features["ink_length"])  # Padded to the batch's longest.
  if "image" in expect:
    size = expect["image"]
    assert features["image"].shape == (8, size, size, 1) and features["image"].dtype == tf.float32
    assert 0 <= float(tf.reduce_min(features["image"])) and float(tf.reduce_max(features["image"])) <= 1


def test_stroke5_padding_rows(records_dir):
  features, _ = _first(data.make_dataset(records_dir, "train", models.get("bilstm"), 8, deterministic=True))
  stroke5, lengths = features["ink"].numpy(), features["ink_length"].numpy()
  for row, n in zip(stroke5, lengths):
    np.testing.assert_array_equal(row[n:], np.tile([0, 0, 0, 0, 1], (len(row) - n, 1)))
    np.testing.assert_array_equal(row[:n, 2] + row[:n, 3], np.ones(n))
    assert (row[:n, 4] == 0).all()


def test_stored_and_rasterised_images_agree(records_dir):
  spec = models.get("resnet18")
  stored, _ = _first(data.make_dataset(records_dir, "train", spec, 16, deterministic=True, image_source="stored",
                                       bucket=False))
  rasterised, _ = _first(data.make_dataset(records_dir, "train", spec, 16, deterministic=True,
                                           image_source="raster", bucket=False))
  # cairosvg (exact) vs the in-graph rasteriser: Google's numpy_bitmap geometry both.
  assert float(tf.reduce_mean(tf.abs(stored["image"] - rasterised["image"]))) * 255 < 2.0


def test_tf_encoding_equals_numpy(data_dir):
  with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", "dog.ndjson")) as f:
    drawings = [ink.strokes_to_points(json.loads(line)["drawing"]) for line in f]
  steps = max(len(p) for p in drawings)
  points = np.zeros((len(drawings), steps, 3), np.float32)
  for i, p in enumerate(drawings):
    points[i, :len(p)] = p
  lengths = np.array([len(p) for p in drawings])
  encoded, ink_lengths = ink.encode_tf(points, lengths)
  decoded, decoded_lengths = ink.decode_tf(encoded, tf.constant([ink.encode(p)[1] for p in drawings]),
                                           tf.constant([ink.encode(p)[2] for p in drawings]), ink_lengths)
  for i, p in enumerate(drawings):
    np.testing.assert_allclose(encoded[i, :len(p) - 1], ink.encode(p)[0], atol=1e-6)
    assert not encoded[i, len(p) - 1:].numpy().any()
    np.testing.assert_allclose(decoded[i, :len(p)], p, atol=1e-3)
  np.testing.assert_array_equal(decoded_lengths, lengths)


def test_bucketing_pads_less_than_padded_batch(records_dir):
  spec = models.get("rnn")

  def padded_steps(bucket):
    dataset = data.make_dataset(records_dir, "train", spec, 8, bucket=bucket, deterministic=True)
    return sum(int(tf.size(f["ink_length"])) * int(f["ink"].shape[1]) for f, _ in dataset)

  real = sum(int(tf.reduce_sum(f["ink_length"])) for f, _ in data.make_dataset(records_dir, "train", spec, 8))
  assert real <= padded_steps(True) < padded_steps(False)


@pytest.mark.parametrize("seed", [3, None])
def test_deterministic_mode_repeats_batches(records_dir, seed):
  spec = models.get("rnn")
  runs = [[(f["ink"].numpy(), l.numpy()) for f, l in data.make_dataset(
      records_dir, "train", spec, 8, training=True, deterministic=True, seed=seed, repeat=False)] for _ in range(2)]
  assert len(runs[0]) == len(runs[1]) > 0
  for (ink_a, labels_a), (ink_b, labels_b) in zip(*runs):
    np.testing.assert_array_equal(ink_a, ink_b)
    np.testing.assert_array_equal(labels_a, labels_b)


def test_image_only_records_feed_image_models_and_refuse_sequence_models(bitmap_records_dir):
  features, _ = _first(data.make_dataset(bitmap_records_dir, "train", models.get("resnet18"), 4))
  assert features["image"].shape == (4, 28, 28, 1)
  for name in ("rnn", "bilstm", "fusion"):
    with pytest.raises(data.RecordsError, match="image-only"):
      data.make_dataset(bitmap_records_dir, "train", models.get(name), 4)


def test_missing_records_say_how_to_make_them(tmp_path):
  with pytest.raises(data.RecordsError, match="python -m quickdraw_tf.make_records"):
    data.make_dataset(str(tmp_path / "nothing"), "train", models.get("rnn"), 4)


def _examples(records_dir, split, input_context=None):
  """Each example of a split as ``(label, ink bytes)``, read through an rnn pipeline."""
  dataset = data.make_dataset(records_dir, split, models.get("rnn"), 16, deterministic=True, bucket=False,
                              input_context=input_context)
  return collections.Counter((int(label), f["ink"][i, :n].numpy().tobytes())
                             for f, labels in dataset for i, (n, label) in enumerate(zip(f["ink_length"], labels)))


def _context(pipelines, pipeline_id):
  return tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=pipeline_id,
                                    num_replicas_in_sync=pipelines)


def test_input_pipelines_are_sharded_by_file(records_dir):
  """What distribute_datasets_from_function gives each worker: whole files, disjoint, covering the split."""
  paths = records.shard_paths(records_dir, "train")
  assert len(paths) == 8
  every = _examples(records_dir, "train")
  shards = [_examples(records_dir, "train", _context(2, i)) for i in range(2)]
  assert not set(shards[0]) & set(shards[1])
  assert shards[0] + shards[1] == every
  for i, shard in enumerate(shards):  # Pipeline i reads files i, i + 2, ...: all of their records.
    assert sum(shard.values()) == sum(1 for _ in tf.data.TFRecordDataset(paths[i::2]))


def test_fewer_files_than_pipelines_shard_by_example(records_dir):
  assert len(records.shard_paths(records_dir, "eval")) < 4
  every = _examples(records_dir, "eval")
  shards = [_examples(records_dir, "eval", _context(4, i)) for i in range(4)]
  assert sum(shards, collections.Counter()) == every
  assert all(shards) and not any(set(a) & set(b) for j, a in enumerate(shards) for b in shards[j + 1:])


def test_distributed_dataset_under_mirrored_strategy(records_dir):
  """Two logical CPUs (configured before TensorFlow starts, hence a subprocess)."""
  script = textwrap.dedent(f"""
      import tensorflow as tf
      cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
      from quickdraw_tf import models
      from quickdraw_tf.pipelines import data
      strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
      dataset = data.distributed_dataset(strategy, {records_dir!r}, "train", models.get("rnn"), 8, training=True)
      features, labels = next(iter(dataset))
      shapes = [tuple(t.shape) for t in strategy.experimental_local_results(labels)]
      print("SHAPES", shapes)
      """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "SHAPES [(4,), (4,)]" in result.stdout


@pytest.mark.parametrize("name", ["resnet18", "fusion"])
def test_replicas_rasterise_the_images_of_the_host_pipeline(records_dir, name):
  """raster_on_replicas batches, through replica_inputs in strategy.run, are the host's inputs bit for bit."""
  spec = models.get(name)
  kwargs = dict(deterministic=True, image_source="raster", image_size=32)
  host = data.make_dataset(records_dir, "eval", spec, 8, **kwargs)
  ink_only = data.make_dataset(records_dir, "eval", spec, 8, raster_on_replicas=True, **kwargs)
  features, _ = _first(ink_only)
  assert "image" not in features and {"points", "lengths"} <= set(features)
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  on_replica = tf.function(lambda f: strategy.run(lambda f: data.replica_inputs(spec, f, 32), args=(f,)))
  batches = 0
  for (expected, expected_labels), (features, labels) in zip(host, ink_only):
    got = on_replica(features)
    assert set(got) == set(expected)
    for key, value in expected.items():
      np.testing.assert_array_equal(got[key].numpy(), value.numpy())
    np.testing.assert_array_equal(labels, expected_labels)
    batches += 1
  assert batches > 1


def test_rasterise_in_step_gives_the_host_loss_and_trains(records_dir):
  spec = models.get("resnet18")
  kwargs = dict(deterministic=True, image_source="raster", image_size=32)
  model = models.build("resnet18", len(WORDS), image_size=32)
  model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  host_loss = model.evaluate(data.make_dataset(records_dir, "eval", spec, 8, **kwargs), verbose=0)
  ink_only = data.make_dataset(records_dir, "eval", spec, 8, raster_on_replicas=True, **kwargs)
  with pytest.raises(ValueError, match="image"):  # The plain model cannot read ink-only batches...
    model.evaluate(ink_only.take(1), verbose=0)
  data.rasterise_in_step(model, spec, 32)  # ... its wrapped steps can.
  assert model.evaluate(ink_only, verbose=0) == host_loss
  model.fit(ink_only.take(2), verbose=0)
  assert model.evaluate(ink_only, verbose=0) != host_loss
  assert not data.has_accelerators(tf.distribute.get_strategy())
  assert not data.has_accelerators(tf.distribute.OneDeviceStrategy("/cpu:0"))
