"""Sketch-RNN: loss terms, training, sampling, data, train/generate/export end to end (tiny units)."""

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
from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.models import sketch_rnn
from quickdraw_tf.models import sketch_rnn_cells
from quickdraw_tf.pipelines import sketch_rnn_data
from quickdraw_tf.training import run_dir
from quickdraw_tf.training import sketch_rnn_train
from tests import synthetic
from tests import verbs

TINY = {"encoder_units": 8, "latent_size": 4, "decoder_units": 16, "num_mixtures": 3}
HYPER = {"decoder_cell": "hyper", "hyper_units": 8, "hyper_embedding": 4}
MAX_SEQ_LEN = 60
QUIET = verbs.QUIET
WORDS = ("cat", "fish")


@pytest.fixture(scope="module")
def records_dir(data_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("records")
  inputs = [os.path.join(data_dir, "strokes", "simplified_lamnguyen", f"{w}.ndjson") for w in WORDS]
  make_records.convert(inputs, str(out), workers=1, progress=False, num_shards=1, eval_fraction=0.2,
                       test_fraction=0)
  return str(out)


def _cli(verb, *args):
  return verbs.run(verb, *args)


@pytest.fixture(scope="module")
def model_dir(records_dir, tmp_path_factory):
  """A tiny sketch_rnn trained for 2 steps through the command line."""
  out = str(tmp_path_factory.mktemp("run") / "sketch_rnn")
  options = [f"--model_option={k}={v}" for k, v in {**TINY, "max_seq_len": MAX_SEQ_LEN}.items()]
  result = _cli("train", "--model=sketch_rnn", f"--records={records_dir}", f"--model_dir={out}", "--epochs=1",
                "--steps_per_epoch=2", "--batch_size=8", *options)
  assert result.returncode == 0, result.stderr[-3000:]
  return out


def _log_normal(x, y, mx, my, sx, sy, rho):
  """The bivariate normal density, written out."""
  zx, zy = (x - mx) / sx, (y - my) / sy
  z = zx**2 + zy**2 - 2 * rho * zx * zy
  return np.exp(-z / (2 * (1 - rho**2))) / (2 * np.pi * sx * sy * np.sqrt(1 - rho**2))


def test_loss_terms_match_a_hand_computation():
  rng = np.random.default_rng(0)
  m, n_max = 2, 3
  outputs = rng.normal(size=(2, n_max, 6 * m + 3)).astype(np.float32)
  pens = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[1, 0, 0], [0, 0, 1], [0, 0, 1]]], np.float32)
  strokes = np.concatenate([rng.normal(size=(2, n_max, 2)).astype(np.float32), pens], axis=2)
  length = np.array([2, 1])
  offsets, pen = sketch_rnn.reconstruction_loss(strokes, length, outputs, m, n_max)
  expected_offsets, expected_pen = [], []
  for b in range(2):
    total_s = total_p = 0.0
    for i in range(n_max):
      params = outputs[b, i, :6 * m].reshape(m, 6).astype(np.float64)
      pi = np.exp(params[:, 0]) / np.exp(params[:, 0]).sum()
      density = sum(pi[j] * _log_normal(strokes[b, i, 0], strokes[b, i, 1], params[j, 1], params[j, 2],
                                        np.exp(params[j, 3]), np.exp(params[j, 4]), np.tanh(params[j, 5]))
                    for j in range(m))
      if i < length[b]:  # L_s: only the N_s real steps.
        total_s -= np.log(density)
      q = np.exp(outputs[b, i, 6 * m:]) / np.exp(outputs[b, i, 6 * m:]).sum()
      if i <= length[b]:  # L_p: the N_s steps and the end-of-sketch row after them.
        total_p -= np.sum(strokes[b, i, 2:] * np.log(q))
    expected_offsets.append(total_s / n_max)
    expected_pen.append(total_p / n_max)
  np.testing.assert_allclose(float(offsets), np.mean(expected_offsets), rtol=1e-5)
  np.testing.assert_allclose(float(pen), np.mean(expected_pen), rtol=1e-5)
  # Offsets past N_s do not count.
  strokes[0, 2, :2] += 100.0
  strokes[1, 1:, :2] -= 50.0
  np.testing.assert_allclose(float(sketch_rnn.reconstruction_loss(strokes, length, outputs, m, n_max)[0]),
                             float(offsets), rtol=1e-6)
  mu, sigma_hat = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
  expected_kl = np.mean([-np.sum(1 + s - u**2 - np.exp(s)) / (2 * 5) for u, s in zip(mu, sigma_hat)])
  np.testing.assert_allclose(float(sketch_rnn.kl_loss(mu, sigma_hat)), expected_kl, rtol=1e-5)


def test_total_loss_anneals_the_kl_weight_and_floors_the_kl():
  hp = sketch_rnn.HParams(kl_weight=0.5, kl_eta_min=0.01, kl_decay=0.9, kl_min=0.2)
  np.testing.assert_allclose(float(sketch_rnn.kl_weight(0, hp)), 0.005, rtol=1e-5)
  np.testing.assert_allclose(float(sketch_rnn.kl_weight(1, hp)), 0.5 * (1 - 0.99 * 0.9), rtol=1e-5)
  np.testing.assert_allclose(float(sketch_rnn.kl_weight(10000, hp)), 0.5, rtol=1e-5)
  model = sketch_rnn.build(**TINY, max_seq_len=5)
  inputs = {"strokes": tf.constant([[[0.1, 0.2, 1, 0, 0]] + [list(sketch_rnn.END_OF_SKETCH)] * 4]),
            "length": tf.constant([1])}
  results = model(inputs)
  results["mu"], results["sigma_hat"] = tf.zeros([1, 4]), tf.zeros([1, 4])  # L_KL = 0 < KL_min
  terms = model.loss_terms(inputs, results, training=False)
  np.testing.assert_allclose(float(terms["total"]), float(terms["r"]) + 0.5 * 0.2, rtol=1e-5)


def test_a_few_steps_on_real_drawings_lower_the_reconstruction_loss(records_dir):
  keras.utils.set_random_seed(1)
  stats = sketch_rnn_data.split_statistics(records_dir, "train", MAX_SEQ_LEN)
  batch = next(iter(sketch_rnn_data.make_dataset(records_dir, "train", 16, MAX_SEQ_LEN, stats["offset_std"])))
  model = sketch_rnn.build(**TINY, max_seq_len=MAX_SEQ_LEN, recurrent_dropout=0.0)
  model.compile(keras.optimizers.Adam(1e-2, clipvalue=1.0))
  before = model.evaluate(batch, verbose=0, return_dict=True)["r_loss"]
  model.fit(tf.data.Dataset.from_tensors(batch).repeat(10), epochs=1, verbose=0)
  after = model.evaluate(batch, verbose=0, return_dict=True)["r_loss"]
  assert after < before - 0.1, (before, after)


def _made_up_batch(size, rows, scale_factor=20.0):
  """tests.synthetic's drawings (their first ``rows + 1`` points) as the model's padded, scaled stroke-5."""
  rng = np.random.default_rng(0)
  points, lengths = np.zeros((size, rows + 1, 3), np.float32), []
  for i in range(size):
    drawing = ink_lib.strokes_to_points(synthetic.drawing(WORDS[i % len(WORDS)], rng))[:rows + 1]
    drawing[-1, 2] = 1.0  # The cut drawing ends there.
    points[i, :len(drawing)] = drawing
    lengths.append(len(drawing))
  strokes, length = sketch_rnn_data.points_to_stroke5(points, lengths, scale_factor)
  return {"strokes": strokes, "length": length}


def test_hyper_cell_scales_the_main_lstm_gate_rows_by_vectors_from_its_hyper_lstm():
  rng = np.random.default_rng(0)
  cell = sketch_rnn_cells.HyperLSTMCell(6, hyper_units=5, hyper_embedding=3)
  cell.build((None, 4))
  for weight in cell.weights:  # Away from the start, where every scale is 0.1 whatever the hyper LSTM says.
    weight.assign(rng.normal(size=weight.shape).astype(np.float32))
  x = rng.normal(size=(2, 4)).astype(np.float32)
  states = [rng.normal(size=(2, n)).astype(np.float32) for n in (6, 6, 5, 5)]
  h, new_states = cell(x, states)
  assert list(cell.state_size) == [6, 6, 5, 5] and cell.layer_norm and h.shape == (2, 6)
  assert [tuple(s.shape) for s in new_states] == [(2, 6), (2, 6), (2, 5), (2, 5)]
  hyper_h, hyper_state = cell.hyper_cell(np.concatenate([x, states[0]], 1), states[2:])  # reads [x; h]
  np.testing.assert_allclose(new_states[2:], hyper_state, rtol=1e-5)
  hyper_h = hyper_h.numpy()
  z = (hyper_h @ cell.scale_embedding_kernel.numpy() + cell.scale_embedding_bias.numpy()).reshape(2, 8, 3)
  scales = np.einsum("bke,keu->bku", z, cell.scale_projection.numpy())  # [b, 4 x gates + 4 h gates, u]
  z_bias = (hyper_h @ cell.bias_embedding_kernel.numpy()).reshape(2, 4, 3)
  gates = (scales[:, :4] * (x @ cell.input_kernel.numpy()).reshape(2, 4, 6)
           + scales[:, 4:] * (states[0] @ cell.recurrent_kernel.numpy()).reshape(2, 4, 6)
           + np.einsum("bke,keu->bku", z_bias, cell.bias_projection.numpy()) + cell.bias.numpy().reshape(4, 6))
  expected_h, expected_c = cell.update([gates[:, k] for k in range(4)], states[1])
  np.testing.assert_allclose(h, expected_h, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(new_states[1], expected_c, rtol=1e-4, atol=1e-5)
  steered, _ = cell(x, states[:2] + [s + 1.0 for s in states[2:]])
  assert np.abs(steered - h).max() > 1e-3


def test_a_few_steps_with_the_hyper_decoder_lower_the_reconstruction_loss():
  keras.utils.set_random_seed(1)
  batch = _made_up_batch(8, 24)
  model = sketch_rnn.build(**TINY, **HYPER, max_seq_len=24)
  assert model.initial_state.units == 2 * 16 + 2 * 8  # [h, c, hyper_h, hyper_c] from z
  model.compile(keras.optimizers.Adam(1e-2, clipvalue=1.0))
  before = model.evaluate(batch, verbose=0, return_dict=True)["r_loss"]
  model.fit(tf.data.Dataset.from_tensors(batch).repeat(10), epochs=1, verbose=0)
  after = model.evaluate(batch, verbose=0, return_dict=True)["r_loss"]
  assert after < before - 0.3, (before, after)
  assert np.abs(model.cell.scale_embedding_kernel.numpy()).max() > 0  # The hyper network learnt (it starts at 0).


@pytest.mark.parametrize("conditional", [True, False])
def test_hyper_decoder_samples_repeat_with_the_seed_and_stop_at_p3_or_max_len(conditional):
  keras.utils.set_random_seed(2)
  model = sketch_rnn.build(**TINY, **HYPER, max_seq_len=12, conditional=conditional)
  state = model.decoder_state(tf.random.normal([3, 4]), 3)
  assert [tuple(s.shape) for s in state] == [(3, 16), (3, 16), (3, 8), (3, 8)]
  assert np.abs(state[3]).max() > 0 if conditional else not np.any(state[3])  # tanh(W z + b) or zeros
  strokes, _ = sketch_rnn.sample_prior(model, 3, 0.7, [1, 2], 12)
  np.testing.assert_array_equal(sketch_rnn.sample_prior(model, 3, 0.7, [1, 2], 12)[0], strokes)
  bias = model.output_layer.bias.numpy()
  for pen_bias, expected in ((50.0, 0), (-50.0, 12)):
    bias[-1] = pen_bias  # p3's logit
    model.output_layer.bias.assign(bias)
    np.testing.assert_array_equal(sketch_rnn.sample_prior(model, 3, 1.0, [0, 0], 12)[1], [expected] * 3)


def test_decoder_cell_is_one_of_three_and_an_unknown_one_is_a_one_line_error():
  with pytest.raises(ValueError, match=r"^unknown sketch_rnn decoder_cell 'gru'; valid: lstm, layer_norm, hyper$"):
    models.build("sketch_rnn", 2, **TINY, decoder_cell="gru")
  spelled = models.build("sketch_rnn_uncond", 2, **TINY, decoder_cell="layer_norm")
  assert spelled.cell.layer_norm and len(spelled.cell.weights) == 3 + 2 * 5
  assert not models.build("sketch_rnn_uncond", 2, **TINY).cell.layer_norm


def test_records_become_scaled_stroke5_padded_to_the_batch_and_long_drawings_are_counted(records_dir):
  stats = sketch_rnn_data.split_statistics(records_dir, "train", 20)
  full = sketch_rnn_data.split_statistics(records_dir, "train")
  assert stats["too_long"] > 0 and stats["kept"] + stats["too_long"] + stats["empty"] == full["kept"] + full["empty"]
  assert 0 < stats["longest"] <= 20 < full["longest"]
  batch = next(iter(sketch_rnn_data.make_dataset(records_dir, "train", 64, 20, 2.0)))
  strokes, length = batch["strokes"].numpy(), batch["length"].numpy()
  # The batch's longest drawing and its end-of-sketch row, not max_seq_len: what the data needs.
  assert strokes.shape[1:] == (length.max() + 1, 5) and len(length) == stats["kept"] and length.max() <= 20
  rows = strokes.shape[1]
  for drawing, n in zip(strokes, length):
    np.testing.assert_array_equal(drawing[n:], np.tile(sketch_rnn.END_OF_SKETCH, (rows - n, 1)))
    np.testing.assert_array_equal(drawing[:n, 2] + drawing[:n, 3], np.ones(n))  # one pen state a row
    assert drawing[n - 1, 3] == 1  # the last stroke ends
  fixed = next(iter(sketch_rnn_data.make_dataset(records_dir, "train", 64, 20, 2.0, pad_to=21)))
  assert fixed["strokes"].shape[1] == 21
  np.testing.assert_array_equal(fixed["strokes"][:, :rows], strokes)


def test_training_batches_are_bucketed_by_length(records_dir):
  batches = sketch_rnn_data.make_dataset(records_dir, "train", 8, MAX_SEQ_LEN, 2.0, training=True, seed=0)
  bounds = (0, *sketch_rnn_data.data.BUCKET_BOUNDARIES, MAX_SEQ_LEN + 1)
  for batch in batches.take(6):
    length = batch["length"].numpy()
    bucket = np.searchsorted(bounds, length, side="right")
    assert len(set(bucket)) == 1 and len(length) == 8, length  # one bucket a batch
    assert batch["strokes"].shape[1] == length.max() + 1


def test_the_loss_does_not_depend_on_padding_and_divides_by_the_data_n_max(records_dir):
  """The same drawings padded to their batch's need or to max_seq_len + 1 (the paper's): the same L_s, L_p."""
  keras.utils.set_random_seed(2)
  stats = sketch_rnn_data.split_statistics(records_dir, "train", MAX_SEQ_LEN)
  make = lambda **kw: next(iter(sketch_rnn_data.make_dataset(  # pylint: disable=unnecessary-lambda-assignment
      records_dir, "eval", 16, MAX_SEQ_LEN, stats["offset_std"], **kw)))
  tight, padded = make(), make(pad_to=MAX_SEQ_LEN + 1)
  assert tight["strokes"].shape[1] < padded["strokes"].shape[1]
  model = sketch_rnn.build(**TINY, max_seq_len=MAX_SEQ_LEN)
  mu, _ = model.encode(tight["strokes"], tight["length"])
  np.testing.assert_allclose(mu, model.encode(padded["strokes"], padded["length"])[0], atol=1e-5)
  noise = model.noise_seed.state.numpy()
  terms = []
  for batch in (tight, padded):
    model.noise_seed.state.assign(noise)  # The same z.
    terms.append(model.loss_terms(batch, model(batch), training=False))
  for key in ("offsets", "pen", "kl"):
    np.testing.assert_allclose(float(terms[0][key]), float(terms[1][key]), rtol=1e-5, err_msg=key)
  # N_max is the run's (the data's), not the batch's width: halving it doubles the loss.
  half = sketch_rnn.build(**TINY, max_seq_len=MAX_SEQ_LEN // 2)
  half.set_weights(model.get_weights())
  half.noise_seed.state.assign(noise)
  doubled = half.loss_terms(tight, half(tight), training=False)
  np.testing.assert_allclose(float(doubled["r"]), 2 * float(terms[0]["r"]), rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "layer_norm"])
def test_the_decoder_sequence_equals_the_cell_run_step_by_step(cell):
  """decode_sequence (input projection ahead of the loop) == keras.layers.RNN over the same cell."""
  model = sketch_rnn.build(**TINY, decoder_cell=cell)
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=(3, 7, 5 + TINY["latent_size"])).astype(np.float32)
  state = [tf.constant(rng.normal(size=(3, TINY["decoder_units"])).astype(np.float32)) for _ in range(2)]
  np.testing.assert_allclose(sketch_rnn_cells.decode_sequence(model.cell, inputs, state),
                             model.decoder(inputs, initial_state=state), atol=1e-6)
  dropped = sketch_rnn_cells.decode_sequence(model.cell, inputs, state, training=True)
  assert np.all(np.isfinite(dropped)) and not np.allclose(dropped, model.decoder(inputs, initial_state=state))


def test_the_learning_rate_decays_to_its_floor_as_magenta():
  schedule = sketch_rnn_train.DecayingLearningRate(1e-3, 0.9999, 1e-5)
  np.testing.assert_allclose(float(schedule(0)), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(10_000)), (1e-3 - 1e-5) * 0.9999**10_000 + 1e-5, rtol=1e-3)  # float32
  np.testing.assert_allclose(float(schedule(10**7)), 1e-5, rtol=1e-5)
  hparams = sketch_rnn.HParams(learning_rate_decay=1.0)
  assert sketch_rnn_train.learning_rate(type("Config", (), {"learning_rate": 1e-4})(), hparams) == 1e-4


def test_points_round_trip_through_stroke5():
  points = ink_lib.fit_to_frame(np.array([[0, 0, 0], [10, 20, 0], [30, 5, 1], [40, 40, 0], [50, 0, 1]], np.float32))
  strokes, rows = sketch_rnn_data.points_to_stroke5(points[None], [5], 3.0)
  assert int(rows[0]) == 4
  back = sketch_rnn_data.stroke5_to_points(strokes[0], rows[0], 3.0)
  np.testing.assert_allclose(back, points, atol=1e-3)


def test_sampling_returns_valid_stroke5_that_stops_at_the_end_or_max_len_for_any_seed():
  keras.utils.set_random_seed(3)
  model = sketch_rnn.build(**TINY, max_seq_len=12)
  z = tf.random.normal([5, 4])
  for seed in range(4):
    strokes, length = sketch_rnn.sample(model, z, 0.7, [seed, 9], 12)
    strokes, length = strokes.numpy(), length.numpy()
    assert strokes.shape == (5, 12, 5) and np.all(np.isfinite(strokes)) and np.all(length <= 12)
    for drawing, n in zip(strokes, length):
      np.testing.assert_array_equal(drawing[:n, 2:].sum(1), np.ones(n))  # one-hot pens
      assert not drawing[:n, 4].any()  # no end before the length
      np.testing.assert_array_equal(drawing[n:], np.tile(sketch_rnn.END_OF_SKETCH, (12 - n, 1)))
    again = sketch_rnn.sample(model, z, 0.7, [seed, 9], 12)[0].numpy()
    np.testing.assert_array_equal(again, strokes)
    other = sketch_rnn.sample(model, z, 0.7, [seed + 100, 9], 12)[0].numpy()
    assert not np.array_equal(other, strokes)


@pytest.mark.parametrize("pen_bias, expected", [(50.0, 0), (-50.0, 12)])
def test_sampling_stops_at_p3_or_runs_to_max_len(pen_bias, expected):
  model = sketch_rnn.build_unconditional(**TINY, max_seq_len=12)
  bias = model.output_layer.bias.numpy()
  bias[-1] = pen_bias  # p3's logit
  model.output_layer.bias.assign(bias)
  _, length = sketch_rnn.sample(model, None, 1.0, [0, 0], 12, batch_size=3)
  np.testing.assert_array_equal(length.numpy(), [expected] * 3)


def test_train_writes_config_scale_factor_logs_and_saved_model(model_dir, records_dir):
  with open(os.path.join(model_dir, "config.json")) as f:
    config = json.load(f)
  stats = sketch_rnn_data.split_statistics(records_dir, "train", MAX_SEQ_LEN)
  assert config["model"] == "sketch_rnn" and config["model_options"]["max_seq_len"] == MAX_SEQ_LEN
  np.testing.assert_allclose(config["model_options"]["scale_factor"], stats["offset_std"], rtol=1e-6)
  assert config["data"]["train"]["too_long"] == stats["too_long"]
  for name in ("final.weights.h5", "best.weights.h5", "saved_model/saved_model.pb",
               "saved_model/assets/sketch_rnn.json"):
    assert os.path.exists(os.path.join(model_dir, name)), name
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  tags = set()
  for sub in ("train", "validation"):
    for path in os.listdir(os.path.join(model_dir, "logs", sub)):
      accumulator = event_accumulator.EventAccumulator(os.path.join(model_dir, "logs", sub, path),
                                                       size_guidance={"tensors": 0})
      accumulator.Reload()
      tags |= set(accumulator.Tags()["tensors"])
  assert {"epoch_r_loss", "epoch_kl_loss", "epoch_kl_weight", "reconstructions", "samples"} <= tags, tags


def test_saved_model_samples_like_the_keras_model_in_a_fresh_process(model_dir, tmp_path):
  model, _ = run_dir.restore(model_dir)
  strokes, length = sketch_rnn.sample_prior(model, 4, 0.5, [7, 8], MAX_SEQ_LEN)
  expected = np.concatenate([strokes[..., :2] * model.hparams.scale_factor, strokes[..., 2:]], -1)
  script = textwrap.dedent(f"""
      import sys, numpy as np, tensorflow as tf
      loaded = tf.saved_model.load({os.path.join(model_dir, "saved_model")!r})
      out = loaded.signatures["sample"](num=tf.constant(4), temperature=tf.constant(0.5),
                                        seed=tf.constant([7, 8]), max_len=tf.constant({MAX_SEQ_LEN}))
      points = tf.constant([[[0., 0., 0.], [50., 80., 1.], [90., 10., 1.]]])
      mu = loaded.signatures["encode"](points=points, length=tf.constant([3]))["mu"]
      decoded = loaded.signatures["decode"](z=mu, temperature=tf.constant(0.5), seed=tf.constant([1, 1]),
                                            max_len=tf.constant(5))
      assert "quickdraw_tf" not in sys.modules
      np.savez({str(tmp_path / "out.npz")!r}, strokes=out["strokes"], length=out["length"],
               decoded=decoded["strokes"])
  """)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**env, **QUIET}, cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  out = np.load(tmp_path / "out.npz")
  np.testing.assert_array_equal(out["length"], length.numpy())
  np.testing.assert_allclose(out["strokes"], expected, atol=1e-4)
  assert out["decoded"].shape == (1, 5, 5)


def _ndjson(path, drawings):
  path.write_text("".join(json.dumps({"word": "cat", "drawing": d}) + "\n" for d in drawings))
  return str(path)


CAT = [[[10, 60, 120, 200], [40, 10, 30, 60]], [[50, 100, 150], [120, 200, 120]], [[80, 90], [80, 90]]]
FISH = [[[0, 100, 255, 100, 0], [100, 0, 100, 200, 100]]]


@pytest.fixture(scope="module")
def restored(model_dir):
  from quickdraw_tf import generate  # pylint: disable=g-import-not-at-top
  return generate.load(model_dir)


@pytest.mark.parametrize("mode, num, count", [("sample", 3, 3), ("reconstruct", 1, 4), ("interpolate", 4, 4),
                                              ("complete", 3, 3)])
def test_generate_modes_write_drawings_that_ink_reads_back_deterministically(restored, tmp_path, mode, num, count):
  from quickdraw_tf import generate  # pylint: disable=g-import-not-at-top
  model, config = restored
  drawings = generate.read_drawings(_ndjson(tmp_path / "in.ndjson", [CAT, FISH]), MAX_SEQ_LEN)
  temperatures = [0.1, 0.5] if mode == "reconstruct" else [0.3]
  results = generate.generate(model, mode, drawings, num, temperatures, 5)
  again = generate.generate(model, mode, drawings, num, temperatures, 5)
  assert len(results) == count  # reconstruct: 2 drawings x 2 temperatures
  for (_, strokes, length), (_, strokes_again, _) in zip(results, again):
    np.testing.assert_array_equal(strokes, strokes_again)
    assert 0 <= length <= MAX_SEQ_LEN and strokes.shape == (MAX_SEQ_LEN, 5)
  if mode == "complete":  # Every ending starts with the kept strokes (CAT's first one: 3 rows).
    prefix = results[0][1][:3]
    for _, strokes, _ in results:
      np.testing.assert_array_equal(strokes[:3], prefix)
  paths = generate.write_outputs(model, config, mode, results, str(tmp_path / "out"), 5)
  assert [os.path.basename(p) for p in paths] == [f"{mode}.ndjson", f"{mode}.png", f"{mode}.svg"]
  assert all(os.path.getsize(p) for p in paths[1:]) and not [p for p in os.listdir(tmp_path / "out") if "partial" in p]
  with open(paths[0]) as f:
    lines = f.read().splitlines()
  assert len(lines) == sum(1 for _, _, n in results if n > 0)
  for line in lines:
    record = json.loads(line)
    points = ink_lib.strokes_to_points(record["drawing"])
    assert points.min() >= 0 and points.max() <= 255 and record["word"] == "+".join(sorted(WORDS))


def test_generate_cli_samples_and_errors_in_one_line(model_dir, tmp_path):
  result = _cli("generate", f"--model_dir={model_dir}", "--mode=sample", "--num=2", f"--output={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / "sample.ndjson") as f:
    assert len(f.read().splitlines()) <= 2
  result = _cli("generate", f"--model_dir={model_dir}", "--mode=interpolate", f"--output={tmp_path / 'out'}")
  ours = [line for line in result.stderr.splitlines() if line.startswith("generate:")]
  assert result.returncode == 1 and ours == ["generate: error: --mode=interpolate needs --input=FILE (ndjson drawings)"]
  assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("drawings, message", [
    ([[]], "not a drawing"), ([[[[5], [5]]]], "1 point\\(s\\); at least 2 are needed"),
    ([[[list(range(0, 250, 2)), list(range(0, 125))]]], "124 stroke-5 rows, more than the model's max_seq_len 60")])
def test_generate_refuses_bad_drawings_naming_file_and_line(tmp_path, drawings, message):
  from quickdraw_tf import generate  # pylint: disable=g-import-not-at-top
  source = _ndjson(tmp_path / "bad.ndjson", [CAT] + drawings)
  with pytest.raises(generate.GenerateError, match=f"^{source}:2: .*{message}"):
    generate.read_drawings(source, MAX_SEQ_LEN)


def test_generate_refuses_a_classifier_model_dir(tmp_path):
  from quickdraw_tf import generate  # pylint: disable=g-import-not-at-top
  (tmp_path / "config.json").write_text(json.dumps({"model": "bilstm", "classes": ["cat"]}))
  with pytest.raises(generate.GenerateError, match="holds a 'bilstm' classifier, which cannot draw"):
    generate.load(str(tmp_path))
  with pytest.raises(generate.GenerateError, match="holds no config.json"):
    generate.load(str(tmp_path / "missing"))


def test_registry_builds_both_variants(capsys):
  assert models.get("sketch_rnn").trainer == models.get("sketch_rnn_uncond").trainer == "quickdraw_tf.training.sketch_rnn_train"
  uncond = models.build("sketch_rnn_uncond", 2, **TINY)
  assert not hasattr(uncond, "encoder") and uncond.latent_size == 0
  with pytest.raises(ValueError, match="unknown sketch_rnn options"):
    models.build("sketch_rnn", 2, units=3)
  sketch_rnn._warn_renamed.cache_clear()  # pylint: disable=protected-access  # Warned once a process: maybe before.
  layer_norm = models.build("sketch_rnn", 2, **TINY, layer_norm=True)
  models.build("sketch_rnn", 2, **TINY, layer_norm=True)
  warned = "sketch_rnn: model option layer_norm=true is deprecated; it is now decoder_cell=layer_norm"
  assert capsys.readouterr().err.splitlines().count(warned) == 1  # Once, naming the new spelling.
  inputs = {"strokes": tf.zeros([2, 6, 5]), "length": tf.constant([3, 6])}
  assert layer_norm(inputs)["outputs"].shape == (2, 6, 6 * 3 + 3)
  assert len(layer_norm.cell.weights) == 3 + 2 * 5  # kernels, bias; gamma and beta of 4 gates and the cell


def test_evaluate_refuses_a_generative_model_dir_in_one_line(model_dir):
  result = _cli("evaluate", f"--model_dir={model_dir}")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(f"evaluate: error: {model_dir} holds a generative model")


@pytest.mark.parametrize("temperature", ["inf", "-inf", "nan", "0", "-1"])
def test_generate_refuses_a_temperature_not_finite_and_positive(model_dir, tmp_path, temperature):
  result = _cli("generate", f"--model_dir={model_dir}", f"--temperature=0.5,{temperature}", f"--output={tmp_path}")
  ours = [line for line in result.stderr.splitlines() if line.startswith("generate:")]
  assert result.returncode == 1 and ours == [f"generate: error: --temperature must be finite and positive, got "
                                             f"0.5,{temperature}"]
  assert "Traceback" not in result.stderr and not os.listdir(tmp_path)


def test_generate_says_how_many_drawings_it_wrote_and_why_one_is_missing(model_dir, tmp_path, monkeypatch):
  from quickdraw_tf import generate  # pylint: disable=g-import-not-at-top
  strokes = np.zeros((MAX_SEQ_LEN, 5), np.float32)
  strokes[:3] = [[5, 0, 1, 0, 0], [0, 5, 1, 0, 0], [0, 0, 0, 0, 1]]
  # Two samples, the second ended at its first step (length 0): what a seed can give.
  monkeypatch.setattr(generate, "generate", lambda *args: [("tau 0.5", strokes, 2), ("tau 0.5", strokes, 0)])
  result = _cli("generate", f"--model_dir={model_dir}", "--mode=sample", "--num=2", f"--output={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / "sample.ndjson") as f:
    written = len(f.read().splitlines())
  assert written == 1 and result.stdout.startswith("wrote 1 drawing (1 of the 2 ended at their first step")


def _magenta_drop(ink, dropped):
  """magenta's augment_strokes loop (its semantics, written here as the oracle), with the draws given: point i is
  dropped where ``dropped[i]`` and magenta's rule allows it (a stroke's 4th point on, not its last)."""
  result, previous, count = [], [0.0, 0.0, 1.0], 0
  for i, candidate in enumerate(ink.tolist()):
    count = 0 if candidate[2] == 1 or previous[2] == 1 else count + 1
    if candidate[2] == 0 and previous[2] == 0 and count > 2 and dropped[i]:
      result[-1][0] += candidate[0]
      result[-1][1] += candidate[1]
    else:
      result.append(candidate)
      previous = candidate
  return np.array(result, np.float32)


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_augmentation_drops_the_points_magentas_rule_allows_and_keeps_the_drawings_ends(probability):
  rng = np.random.default_rng(3)
  ink = np.concatenate([rng.normal(size=(40, 2)), (rng.random((40, 1)) < 0.15)], axis=1).astype(np.float32)
  ink[-1, 2] = 1
  out, length = sketch_rnn_data.augment(tf.constant(ink), tf.constant(40), tf.constant([1, 2], tf.int64), 0.0,
                                        probability)
  expected = _magenta_drop(ink, [probability == 1.0] * 40)
  assert int(length) == len(expected) and (len(expected) < 40) == (probability == 1.0)
  np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
  # Dropping a vertex moves no other: the pen-lift points stay where they were.
  lifted = [np.cumsum(d[:, :2], axis=0)[d[:, 2] == 1] for d in (out.numpy(), ink)]
  np.testing.assert_allclose(*lifted, atol=1e-4)


def test_augmentation_scales_x_and_y_within_the_factor_and_differs_per_read(tmp_path):
  ink = np.tile(np.array([[1.0, 1.0, 0.0]], np.float32), (10, 1))
  scales = []
  for seed in range(20):
    out, _ = sketch_rnn_data.augment(tf.constant(ink), tf.constant(10), tf.constant([seed, 0], tf.int64), 0.15, 0.0)
    scales.append(out.numpy()[0, :2])
  scales = np.array(scales)
  assert np.all(np.abs(scales - 1) <= 0.15) and scales.std(axis=0).min() > 0.01 and np.ptp(scales[:, 0] - scales[:, 1]) > 0


@pytest.mark.parametrize("option", ["random_scale_factor=1.5", "augment_stroke_prob=nan", "random_scale_factor=-0.1"])
def test_augmentation_options_out_of_range_are_refused(option):
  name, value = option.split("=")
  with pytest.raises(ValueError, match=name):
    sketch_rnn.make_hparams(**{name: float(value)})


@pytest.mark.parametrize("name, value", [("random_scale_factor", "abc"), ("kl_weight", None), ("decoder_units", 2.5),
                                         ("latent_size", True), ("layer_norm", 1), ("decoder_cell", 3)])
def test_options_of_the_wrong_type_are_refused_naming_the_option(name, value):
  with pytest.raises(ValueError, match=f"{name}=.*expected a"):
    sketch_rnn.make_hparams(**{name: value})
