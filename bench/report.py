"""Shared by the benchmarks: machine description and BENCHMARKS.md sections."""

import datetime
import os
import platform
import re
import subprocess

from absl import flags

import quickdraw_tf

# The 17 vector classes of the reference report (its "vec17" figures), which the benchmarks train on.
VEC17 = ("horse", "dog", "monkey", "cat", "flamingo", "bird", "circle", "scorpion", "duck", "swan", "owl",
         "mosquito", "butterfly", "squiggle", "ant", "square", "triangle")

BENCHMARKS_MD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BENCHMARKS.md")


def define_data_dir():
  """Defines --data_dir, the shared QuickDraw drawings, which absl checks exists before ``main`` runs.

  Once per process: scripts that import one another (and the tests, which import several) all call it.
  """
  if "data_dir" in flags.FLAGS:
    return
  flags.DEFINE_string("data_dir", quickdraw_tf.DEFAULT_DATA_DIR,
                      "The shared QuickDraw data (default: $QUICKDRAW_DATA, else ../shared/data/quickdraw beside "
                      "the repository).")
  flags.register_validator("data_dir", os.path.isdir,
                           message="no such directory: pass --data_dir=DIR, or set QUICKDRAW_DATA, to where the "
                           "QuickDraw data is (its SOURCES.md says what it holds)")


def machine():
  """One line: CPU model, cores, memory, GPU if any, Python, TensorFlow."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
  except (OSError, AttributeError):
    pass
  memory = ""
  try:
    with open("/proc/meminfo") as f:
      memory = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB RAM, "
  except (OSError, ValueError, IndexError):
    pass
  gpu = ""
  try:
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                         text=True, timeout=10, check=False).stdout.strip()
    gpu = f"GPU {out.splitlines()[0]}, " if out else ""
  except (OSError, subprocess.SubprocessError):
    pass
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return (f"{cpu}, {os.cpu_count()} cores, {memory}{gpu}Python {platform.python_version()}, "
          f"TensorFlow {tf.__version__}")


def cpu_flags():
  """The instruction-set flags of this CPU (/proc/cpuinfo), e.g. {"avx2", "avx512_bf16"}; empty where unreadable."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      return set(re.findall(r"^flags\s*:\s*(.*)$", f.read(), re.M)[0].split())
  except (OSError, IndexError):
    return set()


def table(header, rows):
  """A Markdown table from a header list and rows of cells."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def write_section(name, title, command, body, path=BENCHMARKS_MD):
  """Replaces (or appends) the section ``name`` of BENCHMARKS.md (or of ``path``) and prints it."""
  text = (f"<!-- bench:{name} -->\n## {title}\n\n"
          f"Command: `{command}`  \nMachine: {machine()}  \n"
          f"Date: {datetime.date.today().isoformat()}\n\n{body.strip()}\n<!-- /bench:{name} -->\n")
  print(text)
  current = ""
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      current = f.read()
  else:
    current = "# Benchmarks\n\nEvery table here is written by a script under `bench/`; rerun its command to refresh it.\n\n"
  pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n", re.S)
  current = pattern.sub(lambda _: text, current) if pattern.search(current) else current.rstrip("\n") + "\n\n" + text
  with open(path, "w", encoding="utf-8") as f:
    f.write(current)
