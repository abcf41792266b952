"""ink.py: exact values of the tutorial encoding, its inverse, raw simplification."""

import json
import os

import numpy as np
import pytest

from quickdraw_tf.drawings import ink


def test_points_concatenate_strokes_with_end_bits():
  points = ink.strokes_to_points([[[0, 10], [0, 20]], [[5], [5]]])
  np.testing.assert_array_equal(points, [[0, 0, 0], [10, 20, 1], [5, 5, 1]])


def test_encode_hand_computed():
  # Points (0,0) (10,20) | (5,5): bbox lower (0,0), scale (10,20); normalised
  # (0,0) (1,1) (0.5,0.25); deltas from the second point on.
  points = ink.strokes_to_points([[[0, 10], [0, 20]], [[5], [5]]])
  encoded, bbox, origin = ink.encode(points)
  np.testing.assert_allclose(encoded, [[1.0, 1.0, 1.0], [-0.5, -0.75, 1.0]])
  np.testing.assert_array_equal(bbox, [0, 0, 10, 20])
  np.testing.assert_array_equal(origin, [0, 0, 0])


def test_encode_zero_extent_axis_divides_by_one():
  # A horizontal line: y extent 0 is stored as 1, as the tutorial does.
  encoded, bbox, _ = ink.encode(ink.strokes_to_points([[[0, 4, 8], [3, 3, 3]]]))
  np.testing.assert_allclose(encoded, [[0.5, 0, 0], [0.5, 0, 1]])
  np.testing.assert_array_equal(bbox, [0, 3, 8, 1])


def _tutorial(points):
  """Google's tutorial code, verbatim in spirit, as the reference."""
  np_ink = points.copy()
  lower = np.min(np_ink[:, 0:2], axis=0)
  upper = np.max(np_ink[:, 0:2], axis=0)
  scale = upper - lower
  scale[scale == 0] = 1
  np_ink[:, 0:2] = (np_ink[:, 0:2] - lower) / scale
  np_ink[1:, 0:2] -= np_ink[0:-1, 0:2]
  return np_ink[1:, :]


def test_encode_batch_equals_tutorial_on_real_drawings(data_dir):
  with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", "cat.ndjson")) as f:
    all_points = [ink.strokes_to_points(json.loads(line)["drawing"]) for line in f]
  for points, (encoded, bbox, origin) in zip(all_points, ink.encode_batch(all_points)):
    np.testing.assert_array_equal(encoded, _tutorial(points))
    np.testing.assert_allclose(ink.decode(encoded, bbox, origin), points, atol=1e-3)


BAD_STROKES = [
    ([], "empty_drawing"),
    ([[[], []]], "empty_drawing"),
    ([[[1, 2], [3]]], "mismatched_lengths"),
    ([[[1, 2], [3, 4], [5]]], "mismatched_lengths"),
    ([[[1, 2]]], "bad_stroke"),
    ([[[1, "a"], [2, 3]]], "bad_stroke"),
    ([[1, 2]], "bad_stroke"),
    ([[[1, float("nan")], [2, 3]]], "non_finite"),
    ([[[1, float("inf")], [2, 3]]], "non_finite"),
    ([[[1, True], [2, 3]]], "bad_stroke"),  # A bool is an int to numpy: not a coordinate here.
    ([[[False, True], [False, True]]], "bad_stroke"),
    ([[[1, "2"], [2, 3]]], "bad_stroke"),  # numpy would parse a numeric string.
    ([[[1, None], [2, 3]]], "bad_stroke"),
    ([[[1, [2]], [2, 3]]], "bad_stroke"),
    ([[[1, 10**400], [2, 3]]], "non_finite"),  # Overflows float64: OverflowError in numpy.
    ([[[1, 1e39], [2, 3]]], "non_finite"),  # Finite in float64, inf in float32.
    ([[[-3e38, 3e38], [2, 3]]], "non_finite"),  # Finite values; their extent is not.
]


@pytest.mark.parametrize("strokes, reason", BAD_STROKES)
def test_bad_strokes_name_their_reason(strokes, reason):
  with pytest.raises(ink.InkError) as e:
    ink.strokes_to_points(strokes)
  assert e.value.reason == reason


def test_without_the_type_scan_only_bools_pass():
  """may_hold_bools=False skips the scan of value types: every other bad value is still found, by dtype."""
  for strokes, reason in BAD_STROKES:
    (points,) = ink.strokes_to_points_batch([strokes], may_hold_bools=False)
    if "True" in str(strokes):
      continue
    assert isinstance(points, ink.InkError) and points.reason == reason, strokes


def test_rdp_keeps_corners_and_drops_collinear_points():
  xy = np.array([[0, 0], [1, 0.1], [2, 0], [3, 0], [3, 5]], float)
  np.testing.assert_array_equal(ink.rdp(xy, 2.0), [True, False, False, True, True])


def test_stroke3_round_trip():
  points = ink.strokes_to_points([[[0, 10, 20], [0, 5, 0]], [[3, 4], [7, 8]]])
  np.testing.assert_array_equal(ink.stroke3_to_points(ink.points_to_stroke3(points)), points)


def test_simplify_raw_matches_google_simplified(data_dir):
  """Same key_id in raw_exupery and simplified_lamnguyen: our conversion vs Google's."""
  simplified = {}
  words = ["cat", "airplane", "bicycle", "The Eiffel Tower", "snowflake", "zebra"]
  for word in words:
    with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", f"{word}.ndjson")) as f:
      for line in f:
        record = json.loads(line)
        simplified[record["key_id"]] = record["drawing"]
  exact = distances = total = 0
  for word in words:
    with open(os.path.join(data_dir, "strokes", "raw_exupery", f"{word}.ndjson")) as f:
      for line in f:
        record = json.loads(line)
        if record["key_id"] not in simplified:
          continue
        ours = ink.simplify_raw(ink.strokes_to_points(record["drawing"]))
        google = ink.strokes_to_points(simplified[record["key_id"]])
        total += 1
        exact += ours.shape == google.shape and np.array_equal(ours, google)
        d = np.hypot(ours[:, None, 0] - google[None, :, 0], ours[:, None, 1] - google[None, :, 1])
        distances += (d.min(1).mean() + d.min(0).mean()) / 2
  print(f"raw->simplified: {exact}/{total} identical, mean chamfer {distances / total:.4f} px")
  assert total >= 100
  assert exact / total > 0.75  # 84.8% over all 7,853 pairs (BENCHMARKS.md)
  assert distances / total < 0.1


def test_fit_to_frame_keeps_aspect():
  points = np.array([[10, 10, 0], [30, 20, 1]], np.float32)
  np.testing.assert_allclose(ink.fit_to_frame(points), [[0, 0, 0], [255, 127.5, 1]])



def test_batch_keeps_good_drawings_beside_bad_values():
  """One bad value sends the batch down the slow path; the other drawings come out the same."""
  good = [[[0, 10], [0, 20]], [[5], [5]]]
  results = ink.strokes_to_points_batch([good, [[[1, True], [2, 3]]], good, [[[1, 10**400], [2, 3]]], "x"])
  np.testing.assert_array_equal(results[0], ink.strokes_to_points(good))
  np.testing.assert_array_equal(results[2], results[0])
  assert [getattr(r, "reason", None) for r in results] == [None, "bad_stroke", None, "non_finite", "empty_drawing"]


def test_numpy_number_coordinates_are_accepted():
  points = ink.strokes_to_points([[np.array([0, 10], np.int16), [np.float32(0), np.float64(20)]]])
  np.testing.assert_array_equal(points, [[0, 0, 0], [10, 20, 1]])


@pytest.mark.parametrize("points, reason", [
    (np.zeros((0, 3), np.float32), "too_few_points"),
    (np.array([[4, 4, 1]], np.float32), "too_few_points"),
    (np.array([[-3e38, 0, 0], [3e38, 1, 1]], np.float32), "non_finite"),  # Extent 6e38: inf in float32.
    (np.array([[0, -3e38, 0], [1, 3e38, 1]], np.float32), "non_finite"),
    (np.array([[0, 0, 0], [np.nan, 1, 1]], np.float32), "non_finite"),
    (np.array([[0, 0, 0], [np.inf, 1, 1]], np.float32), "non_finite"),
])
def test_check_usable_rejects_what_encodes_to_non_finite_ink(points, reason):
  with pytest.raises(ink.InkError) as e:
    ink.check_usable(points)
  assert e.value.reason == reason


def test_check_usable_accepts_large_but_encodable_drawings():
  """Extents up to float32's maximum encode to finite ink, bbox and origin."""
  for points in (np.array([[0, 0, 0], [3e38, 1, 1]], np.float32), np.array([[-1e38, 5, 0], [1e38, 5, 1]], np.float32),
                 np.array([[1, 1, 0], [1, 1, 1]], np.float32)):
    ink.check_usable(points)
    encoded, bbox, origin = ink.encode(points)
    assert np.isfinite(encoded).all() and np.isfinite(bbox).all() and np.isfinite(origin).all()
