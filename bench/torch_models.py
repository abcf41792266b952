"""The PyTorch side of bench/torch_step.py: the reference report's models, and copies of ours where it has none.

The report's code is LogCreative/quickdraw-classifier (``models/sketchrnn.py``,
``models/sketchnet.py``, its batch-normalised AlexNet, ``models/cnnrnn.py``);
``rnn`` (Google's TF 1 tutorial model) and ``resnet18`` (the report's runs a bare
stem on 225 px) are copies of our architectures. Imported only where PyTorch is installed.
"""

import torch
from torch import nn

from bench.report import VEC17

CLASSES = len(VEC17)  # As bench.steps, whose import would load TensorFlow beside PyTorch (triton then crashes).


def conv_relu(cin, cout, kernel, stride=1, padding=0):
  return [nn.Conv2d(cin, cout, kernel, stride, padding), nn.ReLU()]


def pool(size):  # 3x3/2, padded only where it would leave nothing (as common.padding_that_fits).
  padding = 0 if size >= 3 else 1
  return nn.MaxPool2d(3, 2, padding), (size + 2 * padding - 3) // 2 + 1


def sketchanet_trunk(side):  # models/sketchnet.py: 15/3, pools 3/2, fc6 a 7x7 convolution; fc7 [b, 512].
  size = (side - 15) // 3 + 1
  pool1, size = pool(size)
  size = size - 4
  pool2, size = pool(size)
  pool5, size = pool(size)
  return nn.Sequential(*conv_relu(1, 64, 15, 3), pool1, *conv_relu(64, 128, 5), pool2,
                       *conv_relu(128, 256, 3, padding=1), *conv_relu(256, 256, 3, padding=1),
                       *conv_relu(256, 256, 3, padding=1), pool5, *conv_relu(256, 512, min(7, size)),
                       nn.Dropout(0.5), *conv_relu(512, 512, 1), nn.Dropout(0.5), nn.Flatten())


class BiLSTM(nn.Module):  # models/sketchrnn.py: the output at the last (padded) step.
  def __init__(self, features=5, units=256):
    super().__init__()
    self.lstm = nn.LSTM(features, units, bidirectional=True)

  def forward(self, ink):
    out, _ = self.lstm(ink.transpose(0, 1))
    return out[-1]


class Rnn(nn.Module):  # Ours (Google's tutorial): conv1d 48/5, 64/5, 96/3 (linear), 3 BiLSTM 128, sum over time.
  def __init__(self, classes=CLASSES):
    super().__init__()
    self.convs = nn.ModuleList([nn.Conv1d(i, o, k, padding=k // 2) for i, o, k in ((3, 48, 5), (48, 64, 5),
                                                                                   (64, 96, 3))])
    self.lstms = nn.ModuleList([nn.LSTM(i, 128, bidirectional=True) for i in (96, 256, 256)])
    self.dropout = nn.Dropout(0.3)
    self.fc = nn.Linear(256, classes)

  def forward(self, ink, lengths=None):
    """ink [b, t, 3], lengths int64 [b] or None -> logits [b, classes].

    With lengths, as the tutorial's dynamic BiLSTM: each direction runs over a drawing's own points (packed),
    outputs past its end are zeros, so the sum over time is the drawing's; without, over every padded step.
    """
    x = ink.transpose(1, 2)
    for i, conv in enumerate(self.convs):
      x = conv(self.dropout(x) if i else x)
    x = x.permute(2, 0, 1)
    for lstm in self.lstms:
      x = self.dropout(run_lstm(lstm, x, lengths))
    return self.fc(x.sum(0))


def run_lstm(lstm, x, lengths=None):
  """An LSTM's outputs [t, b, units] over x [t, b, c]; with lengths, packed: zeros past each sequence's end."""
  if lengths is None:
    return lstm(x)[0]
  packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
  return nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], total_length=x.shape[0])[0]


def bn_conv(cin, cout, kernel, stride=1, relu=True):
  layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
  return layers + [nn.ReLU()] if relu else layers


class Block(nn.Module):
  def __init__(self, cin, cout, stride):
    super().__init__()
    self.body = nn.Sequential(*bn_conv(cin, cout, 3, stride), *bn_conv(cout, cout, 3, relu=False))
    self.shortcut = nn.Sequential(*bn_conv(cin, cout, 1, stride, relu=False)) if stride > 1 or cin != cout \
        else nn.Identity()

  def forward(self, x):
    return torch.relu(self.body(x) + self.shortcut(x))


def resnet18(classes=CLASSES):  # Ours: the 7x7/2 stem and a 3x3/2 max-pool at every size, as torchvision's.
  stem = [*bn_conv(1, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
  blocks, cin = [], 64
  for stage, cout in enumerate((64, 128, 256, 512)):
    blocks += [Block(cin, cout, 2 if stage else 1), Block(cout, cout, 1)]
    cin = cout
  return nn.Sequential(*stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))


def alexnet(classes=CLASSES):  # The report's batch-normalised AlexNet.
  def conv(cin, cout, kernel, stride=1, padding=0):
    return [nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), nn.ReLU()]
  return nn.Sequential(*conv(1, 64, 11, 4, 2), nn.MaxPool2d(3, 2), *conv(64, 192, 5, padding=2), nn.MaxPool2d(3, 2),
                       *conv(192, 384, 3, padding=1), *conv(384, 256, 3, padding=1), *conv(256, 256, 3, padding=1),
                       nn.MaxPool2d(3, 2), nn.Flatten(), nn.LazyLinear(4096, bias=False), nn.BatchNorm1d(4096),
                       nn.ReLU(), nn.Linear(4096, 4096, bias=False), nn.BatchNorm1d(4096), nn.ReLU(),
                       nn.Linear(4096, classes))


class Fusion(nn.Module):  # models/cnnrnn.py: Sketch-a-Net's fc7 and the BiLSTM's, then 512 and the classes.
  def __init__(self, side, classes=CLASSES):
    super().__init__()
    self.cnn, self.rnn = sketchanet_trunk(side), BiLSTM()
    self.head = nn.Sequential(nn.Linear(1024, 512), nn.ReLU(), nn.Linear(512, classes))

  def forward(self, ink, image):
    return self.head(torch.cat([self.cnn(image), self.rnn(ink)], 1))


def build(name, image_side, classes=CLASSES):
  """The PyTorch model of ``name``: (module, its inputs from (ink [b, t, c], image [b, 1, s, s]))."""
  if name == "rnn":
    return Rnn(classes), lambda ink, image: (ink,)
  if name == "bilstm":
    return nn.Sequential(BiLSTM(), nn.Linear(512, classes)), lambda ink, image: (ink,)
  if name == "sketchanet":
    return nn.Sequential(sketchanet_trunk(image_side), nn.Linear(512, classes)), lambda ink, image: (image,)
  if name == "alexnet":
    return alexnet(classes), lambda ink, image: (image,)
  if name == "resnet18":
    return resnet18(classes), lambda ink, image: (image,)
  return Fusion(image_side, classes), lambda ink, image: (ink, image)
