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


class SketchRNN(nn.Module):
  """Sketch-RNN (Ha & Eck) as quickdraw_tf's `models.sketch_rnn`: forward returns the training loss.

  BiLSTM encoder (256 a direction, packed to each drawing's length) -> mu, sigma_hat (N_z 128); decoder (512) over
  [S_{i-1}; z] from tanh(W z + b); 20-mixture GMM + 3 pen logits; L_s + L_p (each drawing's steps and its end row,
  divided by N_max) + w_KL max(L_KL, KL_min). The "lstm" decoder is nn.LSTM (no recurrent dropout: PyTorch's has
  none); "layer_norm" and "hyper" are Python loops of the cells below, with recurrent dropout 0.1 on the candidate.
  """

  def __init__(self, cell="lstm", n_max=250, units=512, latent=128, mixtures=20, kl_weight=0.5, kl_min=0.2):
    super().__init__()
    self.n_max, self.latent, self.mixtures, self.kl_weight, self.kl_min = n_max, latent, mixtures, kl_weight, kl_min
    self.encoder = nn.LSTM(5, 256, bidirectional=True, batch_first=True)
    self.posterior = nn.Linear(512, 2 * latent)
    self.cell = cell
    if cell == "lstm":
      self.decoder = nn.LSTM(5 + latent, units, batch_first=True)
      state = 2 * units
    else:
      self.decoder = HyperLSTM(5 + latent, units) if cell == "hyper" else LayerNormLSTM(5 + latent, units)
      state = self.decoder.state_size
    self.initial_state = nn.Linear(latent, state)
    self.head = nn.Linear(units, 6 * mixtures + 3)

  def forward(self, strokes, length):
    b, t, _ = strokes.shape
    packed = nn.utils.rnn.pack_padded_sequence(strokes, length, batch_first=True, enforce_sorted=False)
    _, (h, _) = self.encoder(packed)
    mu, sigma_hat = self.posterior(torch.cat([h[0], h[1]], 1)).chunk(2, 1)
    z = mu + torch.exp(sigma_hat / 2) * torch.randn_like(mu)
    start = strokes.new_tensor([0, 0, 1, 0, 0]).expand(b, 1, 5)
    inputs = torch.cat([torch.cat([start, strokes[:, :-1]], 1), z[:, None].expand(b, t, self.latent)], 2)
    state = torch.tanh(self.initial_state(z))
    if self.cell == "lstm":
      h0, c0 = state.chunk(2, 1)
      hidden, _ = self.decoder(inputs, (h0[None].contiguous(), c0[None].contiguous()))
    else:
      hidden = self.decoder(inputs, state)
    return self.loss(strokes, length, self.head(hidden), mu, sigma_hat)

  def loss(self, strokes, length, outputs, mu, sigma_hat):
    m = self.mixtures
    params = outputs[..., :6 * m].reshape(*outputs.shape[:2], m, 6)
    log_pi = torch.log_softmax(params[..., 0], -1)
    sx, sy, rho = params[..., 3].exp(), params[..., 4].exp(), torch.tanh(params[..., 5])
    nx, ny = (strokes[..., :1] - params[..., 1]) / sx, (strokes[..., 1:2] - params[..., 2]) / sy
    one_minus_rho2 = torch.clamp(1 - rho * rho, min=1e-6)
    log_normal = (-(nx * nx + ny * ny - 2 * rho * nx * ny) / (2 * one_minus_rho2)
                  - torch.log(2 * torch.pi * sx * sy * one_minus_rho2.sqrt()))
    steps = torch.arange(strokes.shape[1])[None]
    log_density = torch.logsumexp(log_pi + log_normal, -1)
    offsets = -(log_density * (steps < length[:, None])).sum(1) / self.n_max
    pen_log_q = (strokes[..., 2:] * torch.log_softmax(outputs[..., 6 * m:], -1)).sum(2)
    pen = -(pen_log_q * (steps <= length[:, None])).sum(1) / self.n_max
    kl = -0.5 * torch.mean(1 + sigma_hat - mu * mu - sigma_hat.exp())
    return offsets.mean() + pen.mean() + self.kl_weight * torch.clamp(kl, min=self.kl_min)


class LayerNormLSTM(nn.Module):
  """magenta's LayerNormLSTMCell over a sequence: gates and cell layer-normalised, candidate dropout, forget bias 1."""

  def __init__(self, inputs, units, dropout=0.1):
    super().__init__()
    self.units, self.dropout, self.state_size = units, dropout, 2 * units
    self.input_kernel = nn.Linear(inputs, 4 * units)
    self.recurrent_kernel = nn.Linear(units, 4 * units, bias=False)
    self.gate_norms = nn.ModuleList([nn.LayerNorm(units) for _ in range(4)])
    self.cell_norm = nn.LayerNorm(units)

  def update(self, gates, c, keep):
    i, j, f, o = (norm(g) for norm, g in zip(self.gate_norms, gates.chunk(4, 1)))
    c = c * torch.sigmoid(f + 1.0) + torch.sigmoid(i) * torch.tanh(j) * keep
    return torch.tanh(self.cell_norm(c)) * torch.sigmoid(o), c

  def forward(self, inputs, state):
    h, c = state.chunk(2, 1)
    projected = self.input_kernel(inputs)
    keep = nn.functional.dropout(torch.ones(*projected.shape[:2], self.units), self.dropout, self.training)
    hidden = []
    for t in range(inputs.shape[1]):
      h, c = self.update(projected[:, t] + self.recurrent_kernel(h), c, keep[:, t])
      hidden.append(h)
    return torch.stack(hidden, 1)


class HyperLSTM(LayerNormLSTM):
  """magenta's HyperLSTMCell (hyper units 256, embeddings 32) over a sequence, as `models.sketch_rnn_cells.HyperLSTMCell`."""

  def __init__(self, inputs, units, hyper_units=256, embedding=32, dropout=0.1):
    super().__init__(inputs, units, dropout)
    self.state_size = 2 * units + 2 * hyper_units
    self.hyper = LayerNormLSTM(inputs + units, hyper_units, dropout=0.0)
    self.scale_embedding = nn.Linear(hyper_units, 8 * embedding)
    self.scale_projection = nn.Parameter(torch.full((8, embedding, units), 0.1 / embedding))
    self.bias_embedding = nn.Linear(hyper_units, 4 * embedding, bias=False)
    self.bias_projection = nn.Parameter(torch.zeros(4, embedding, units))

  @staticmethod
  def per_gate(z, projection):
    k, e, u = projection.shape
    return torch.einsum("bke,keu->bku", z.reshape(-1, k, e), projection).reshape(-1, k * u)

  def forward(self, inputs, state):
    u, hu = self.units, self.hyper.units
    h, c, hyper_h, hyper_c = state.split([u, u, hu, hu], 1)
    projected = self.input_kernel.weight  # The input product is scaled per step: no projection ahead.
    keep = nn.functional.dropout(torch.ones(inputs.shape[0], inputs.shape[1], u), self.dropout, self.training)
    hidden, ones = [], torch.ones(inputs.shape[0], hu)
    for t in range(inputs.shape[1]):
      x = inputs[:, t]
      hyper_gates = self.hyper.input_kernel(torch.cat([x, h], 1)) + self.hyper.recurrent_kernel(hyper_h)
      hyper_h, hyper_c = self.hyper.update(hyper_gates, hyper_c, ones)
      x_scale, h_scale = self.per_gate(self.scale_embedding(hyper_h), self.scale_projection).chunk(2, 1)
      bias = self.per_gate(self.bias_embedding(hyper_h), self.bias_projection)
      gates = x_scale * (x @ projected.t()) + h_scale * self.recurrent_kernel(h) + bias + self.input_kernel.bias
      h, c = self.update(gates, c, keep[:, t])
      hidden.append(h)
    return torch.stack(hidden, 1)
