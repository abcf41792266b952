"""The grammar of bench.accuracy's --variants: ``model[@data]:setting``, and where each variant runs.

  resnet18:stem=small                              a model option, on bmp22 (resnet18 reads images only)
  bilstm:--mixed_precision=mixed_bfloat16          a train flag, on vec17
  alexnet@vec17:--augment --steps_per_epoch=500    train flags, on the data named
"""

from absl import app

from quickdraw_tf import models


def image_only(model):
  """Whether ``model`` reads images and no ink: it trains on bmp22, not vec17."""
  spec = models.get(model)
  return spec.uses_image and not spec.uses_ink


def parse(variant):
  """``model[@data]:setting`` -> (model, data name or None, setting, model options, train flags).

  Raises app.UsageError when malformed.
  """
  head, _, setting = variant.partition(":")
  model, _, data_name = head.partition("@")
  if (model not in models.MODELS or not setting or (not setting.startswith("--") and "=" not in setting)
      or data_name not in ("", "vec17", "bmp22") or (data_name == "bmp22" and not image_only(model))):
    raise app.UsageError(f"--variants={variant}: expected model:option=value or model:--train_flag=value, "
                         "model@vec17:... or (image-only models) model@bmp22:... to choose the data")
  if setting.startswith("--"):
    train_flags = setting.split()
    if not all(f.startswith("--") and f[2:3].isalpha() for f in train_flags):
      raise app.UsageError(f"--variants={variant}: train flags, each --name or --name=value, separated by spaces")
    return model, data_name or None, setting, {}, train_flags
  key, _, value = setting.partition("=")
  try:
    models.check_options(model, {key: value})
  except ValueError as e:
    raise app.UsageError(f"--variants={variant}: {e}") from None
  return model, data_name or None, setting, {key: value}, []


def on_bmp22(model, data_name):
  """Whether a variant of ``model`` naming ``data_name`` (or None) runs on bmp22 rather than vec17."""
  return data_name == "bmp22" or (data_name is None and image_only(model))
