"""ResNet-18 (He et al. 2015): basic residual blocks [2, 2, 2, 2] with batch norm.

The standard 7x7/2 stem and max-pool shrink a 28 px sketch to 7 px before the
first block; for inputs under 112 px a 3x3/1 stem without pooling is used.
"""

import keras
from keras import layers

from quickdraw_tf.models import common

IMAGE_SIZE = 28
STAGES = ((64, 2), (128, 2), (256, 2), (512, 2))


def _conv_bn(x, filters, kernel, stride, name, relu=True):
  x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name)(x)
  x = layers.BatchNormalization(name=f"{name}_bn")(x)
  return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _block(x, filters, stride, name):
  shortcut = x
  if stride != 1 or x.shape[-1] != filters:
    shortcut = _conv_bn(x, filters, 1, stride, f"{name}_shortcut", relu=False)
  x = _conv_bn(x, filters, 3, stride, f"{name}_conv1")
  x = _conv_bn(x, filters, 3, 1, f"{name}_conv2", relu=False)
  return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, shortcut]))


def build(num_classes, image_size=IMAGE_SIZE, stem=None, **unused):
  """keras.Model: {image [b, s, s, 1]} -> logits float32 [b, classes].

  Args:
    stem: "small" (3x3/1) or "imagenet" (7x7/2 + max-pool); default by size.
  """
  image = common.image_input(image_size)
  stem = stem or ("imagenet" if image_size >= 112 else "small")
  if stem == "imagenet":
    x = _conv_bn(image, 64, 7, 2, "conv1")
    x = layers.MaxPooling2D(3, 2, padding="same", name="conv1_pool")(x)
  else:
    x = _conv_bn(image, 64, 3, 1, "conv1")
  for stage, (filters, blocks) in enumerate(STAGES, 2):
    for block in range(blocks):
      x = _block(x, filters, 2 if block == 0 and stage > 2 else 1, f"conv{stage}_block{block + 1}")
  x = layers.GlobalAveragePooling2D(name="pool")(x)
  return keras.Model({"image": image}, common.logits(x, num_classes), name="resnet18")
