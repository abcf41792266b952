"""Choosing a tf.distribute strategy and a mixed-precision policy."""

import json
import os

from absl import logging
import tensorflow as tf

from quickdraw_tf import cli

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def _workers_in_tf_config():
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def make_strategy(name="auto", tpu=None):
  """Builds a strategy.

  ``auto`` picks TPU when ``tpu`` is given, MultiWorkerMirrored when TF_CONFIG
  names several workers, Mirrored with more than one GPU, one device with one
  GPU, and the default strategy otherwise.

  Args:
    name: one of `STRATEGIES`.
    tpu: TPU name or address ("local" on a TPU VM), for ``tpu``/``auto``.

  Returns:
    a ``tf.distribute.Strategy``.
  """
  cli.check_choice(name, STRATEGIES, "--strategy")
  gpus = tf.config.list_physical_devices("GPU")  # Physical: listing logical ones would start the runtime.
  if name == "auto":
    if tpu:
      name = "tpu"
    elif _workers_in_tf_config() > 1:
      name = "multi_worker"
    elif len(gpus) > 1:
      name = "mirrored"
    elif gpus:
      name = "one_device"
    else:
      name = "default"
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    strategy = tf.distribute.TPUStrategy(resolver)
  elif name == "multi_worker":
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
  elif name == "mirrored":
    strategy = tf.distribute.MirroredStrategy()
  elif name == "one_device":
    strategy = tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
  else:
    strategy = tf.distribute.get_strategy()
  logging.info("strategy %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
  return strategy


def precision_policy(setting, strategy):
  """The Keras dtype policy: ``auto`` is float16 on GPU, bfloat16 on TPU, float32 on CPU."""
  cli.check_choice(setting, PRECISIONS, "--mixed_precision")
  if setting != "auto":
    return setting
  if isinstance(strategy, tf.distribute.TPUStrategy):
    return "mixed_bfloat16"
  return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"


def is_chief(strategy):
  """True on the worker that writes checkpoints, summaries and exports."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0 and
                                                        "chief" not in resolver.cluster_spec().as_dict())
