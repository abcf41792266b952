"""bench/device.py: its --quick run on this CPU, and the profile reading its GPU runs rely on."""

import os
import re
import subprocess
import sys

from bench import device


def test_cudnn_ops_are_read_from_the_profile(tmp_path):
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  space = xplane_pb2.XSpace()
  plane = space.planes.add(name="/device:GPU:0")
  for i, name in enumerate(["CudnnRNNV3", "MatMul", "void cudnn::rnn::lstm_elementWise_fp<float>"]):
    plane.event_metadata[i + 1].name = name
  run = tmp_path / "plugins" / "profile" / "2026_11_29_23_00_00"
  run.mkdir(parents=True)
  (run / "host.xplane.pb").write_bytes(space.SerializeToString())
  assert device.cudnn_ops(str(tmp_path)) == (["CudnnRNNV3", "void cudnn::rnn::lstm_elementWise_fp<float>"], 3)
  assert device.cudnn_ops(str(tmp_path / "nothing")) == ([], 0)


def test_quick_run_writes_its_table_into_the_given_file(data_dir, tmp_path):
  output = tmp_path / "BENCHMARKS.md"
  output.write_text("# Benchmarks\n\nan earlier section\n")
  with open(device.report.BENCHMARKS_MD, "rb") as f:
    benchmarks_before = f.read()
  result = subprocess.run([sys.executable, "-m", "bench.device", "--quick", f"--output={output}",
                           f"--data_dir={data_dir}"], capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  text = output.read_text()
  assert text.startswith("# Benchmarks\n\nan earlier section\n") and "<!-- bench:device -->" in text
  assert "devices: CPU:0" in result.stdout
  rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| fusion |")]
  assert len(rows) == 1 and rows[0][2] == "no"  # --quick: one model, without XLA.
  row = rows[0]
  assert float(row[3].replace(",", "")) > 0 and float(row[4].replace(",", "")) > 0  # Step ms, examples/s.
  assert float(row[8].replace(",", "")) > 0 and float(row[9].replace(",", "")) > 0  # Pipelines.
  assert row[-1].rstrip(" |") == "CPU only"  # No accelerator to compare the SavedModel against.
  seen = re.fullmatch(r"\*\*none\*\* \(of (\d+) names\)", row[7])  # The profile was read: no cuDNN on a CPU.
  assert seen and int(seen.group(1)) > 10
  with open(device.report.BENCHMARKS_MD, "rb") as f:
    assert f.read() == benchmarks_before
  assert os.path.exists(output)
