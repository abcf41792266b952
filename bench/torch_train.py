r"""One PyTorch model trained with the reference report's procedure on exported drawings (bench.torch_accuracy's worker).

  python -m bench.torch_train --data=D.npz --model=bilstm --out=DIR [--cap=3600 --patience=3 --eval_steps=0]

The procedure (../shared/reference/cnn-rnn-sketch-classification-report.zh.txt,
section 4 and table 1; the tutorial model: Google's train_model.py):
  * Adam, lr 1e-3, batch 64, PyTorch's weight decay (an L2 term added to the
    gradient, before Adam's scaling) of 1e-3 for the CNNs and 6e-4 for the
    BiLSTM and CNN+RNN; PyTorch's default initialisation.
  * ReduceLROnPlateau('min', factor=0.3, patience=2) stepped after every
    evaluation period on that period's mean training loss.
  * The best weights by eval top-1 are tested.
  * ``rnn``: batch 8, Adam 1e-4, gradients clipped to global norm 9, constant
    rate, no weight decay; each BiLSTM layer runs over a drawing's own points.
  * ``bilstm`` and ``fusion``'s RNN: stroke-5 offsets divided by their
    standard deviation over the training drawings (sketch-rnn's scale), every
    drawing padded with (0, 0, 0, 0, 1) rows to the longest drawing of the
    data, the BiLSTM's output at the last padded step classified.
Evaluation every max(one pass, --eval_steps) steps (0: every pass, the
report's loop); stops after --patience evaluations without a better eval
top-1 or --cap CPU seconds of this process (bench.converge's rule; the
evaluations are inside the cap). Writes DIR/worker.json and
DIR/test_probabilities.npy; a backup after every evaluation (DIR/backup.pt)
lets --resume go on after an interruption.
"""

import json
import os
import time

from absl import app
from absl import flags
import numpy as np
import torch

from bench import converge
from bench import torch_models

flags.DEFINE_string("data", None, "The exported drawings (.npz of bench.torch_accuracy).", required=True)
flags.DEFINE_string("model", None, "rnn, bilstm, sketchanet, alexnet, resnet18 or fusion.", required=True)
flags.DEFINE_string("out", None, "The run's directory.", required=True)
flags.DEFINE_float("cap", converge.CAP, "CPU seconds of training (evaluations included) at most.")
flags.DEFINE_integer("patience", converge.PATIENCE, "Evaluations without a better eval top-1 before stopping.")
flags.DEFINE_integer("eval_steps", 0, "Evaluate every max(one pass, this many) steps; 0: every pass.")
flags.DEFINE_bool("resume", False, "Go on from DIR/backup.pt where there is one.")
flags.DEFINE_integer("seed", 0, "Initialisation, shuffling and dropout seed.")
flags.DEFINE_integer("threads", 1, "PyTorch's threads. 1: on a shared machine more threads spin-wait on CPU "
                     "time that the cap counts, so one gives the original the most steps within the cap.",
                     lower_bound=1)
FLAGS = flags.FLAGS

# (batch, learning rate, weight decay, plateau factor or None for a constant rate, global clipping norm or None).
PROCEDURES = {"rnn": (8, 1e-4, 0.0, None, 9.0), "bilstm": (64, 1e-3, 6e-4, 0.3, None),
              "sketchanet": (64, 1e-3, 1e-3, 0.3, None), "alexnet": (64, 1e-3, 1e-3, 0.3, None),
              "resnet18": (64, 1e-3, 1e-3, 0.3, None), "fusion": (64, 1e-3, 6e-4, 0.3, None)}
PLATEAU_PATIENCE = 2
EVAL_BATCH = 256
STROKE5_PADDING = (0.0, 0.0, 0.0, 0.0, 1.0)


def stroke5_scale(ink, lengths):
  """sketch-rnn's scale: the standard deviation of every real point's (dx, dy) of ``ink`` [n, t, 5]."""
  real = np.arange(ink.shape[1])[None, :] < lengths[:, None]
  return float(np.std(ink[..., :2][real]))


def padded_stroke5(ink, lengths, scale):
  """``ink`` [n, t, 5] with offsets divided by ``scale`` and (0, 0, 0, 0, 1) past each drawing's end."""
  out = ink.astype(np.float32).copy()
  out[..., :2] /= scale
  out[np.arange(ink.shape[1])[None, :] >= lengths[:, None]] = STROKE5_PADDING
  return out


def load(path, model):
  """{split: dict of torch tensors the model reads, and labels}, and the stroke-5 scale (None without)."""
  arrays, scale = np.load(path), None
  if model in ("bilstm", "fusion"):
    scale = stroke5_scale(arrays["train_ink"], arrays["train_lengths"])
  splits = {}
  for split in ("train", "eval", "test"):
    tensors = {"labels": torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64))}
    if f"{split}_ink" in arrays:
      ink, lengths = arrays[f"{split}_ink"], arrays[f"{split}_lengths"]
      tensors["ink"] = torch.from_numpy(padded_stroke5(ink, lengths, scale) if scale else ink.astype(np.float32))
      tensors["lengths"] = torch.from_numpy(lengths.astype(np.int64))
    if f"{split}_image" in arrays:
      tensors["image"] = torch.from_numpy(arrays[f"{split}_image"])  # float16 [n, s, s]
    splits[split] = tensors
  return splits, scale


def inputs(model, data, index):
  """The model's arguments for the drawings ``index`` of one split's tensors."""
  if model == "rnn":  # Padded to the batch's longest drawing, as the tutorial's padded batches.
    lengths = data["lengths"][index]
    return data["ink"][index, :int(lengths.max())], lengths
  image = data["image"][index].float()[:, None] if "image" in data else None
  if model == "fusion":
    return data["ink"][index], image
  return (data["ink"][index],) if model == "bilstm" else (image,)


def predict(network, model, data):
  """Softmax probabilities float32 [n, classes] of one split, in eval mode."""
  network.eval()
  with torch.no_grad():
    out = [torch.softmax(network(*inputs(model, data, torch.arange(i, min(i + EVAL_BATCH, len(data["labels"]))))), 1)
           for i in range(0, len(data["labels"]), EVAL_BATCH)]
  network.train()
  return torch.cat(out).numpy()


def batch_index(step, count, batch, seed):
  """Training drawings of global step ``step``: a fresh permutation each pass, the last partial batch dropped."""
  per_pass = converge.one_pass(count, batch)
  order = np.random.default_rng([seed, step // per_pass]).permutation(count)
  start = (step % per_pass) * batch
  return torch.from_numpy(order[start:start + batch])


class Run:
  """Model, optimiser, schedule and the run's progress; `save` / `restore` as one backup file."""

  def __init__(self, model, splits, classes, side):
    self.model = model
    self.batch, lr, weight_decay, factor, self.clip = PROCEDURES[model]
    self.network = torch_models.build(model, side, classes)[0]
    predict(self.network, model, {k: v[:2] for k, v in splits["eval"].items()})  # Materialises lazy layers.
    self.optimizer = torch.optim.Adam(self.network.parameters(), lr, weight_decay=weight_decay)
    self.schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, "min", factor, PLATEAU_PATIENCE) \
        if factor else None
    self.stall = converge.Stall(FLAGS.patience)
    self.progress = {"step": 0, "cpu_s": 0.0, "curve": [], "train_top1": [], "lr": [], "best_step": 0}
    self.best = None

  def save(self, path):
    state = {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(), "best": self.best,
             "schedule": self.schedule.state_dict() if self.schedule else None, "stall": self.stall.state(),
             "progress": self.progress}
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)

  def restore(self, path):
    state = torch.load(path, weights_only=False)
    self.network.load_state_dict(state["network"])
    self.optimizer.load_state_dict(state["optimizer"])
    if self.schedule:
      self.schedule.load_state_dict(state["schedule"])
    self.stall, self.progress, self.best = converge.Stall(**state["stall"]), state["progress"], state["best"]


def train_period(run, train, steps, cpu_at):
  """Up to ``steps`` training steps, stopping at the cap; (mean loss, running top-1, whether the cap is spent)."""
  losses, hits, seen = [], 0, 0
  count = len(train["labels"])
  for _ in range(steps):
    index = batch_index(run.progress["step"], count, run.batch, FLAGS.seed)
    labels = train["labels"][index]
    logits = run.network(*inputs(run.model, train, index))
    loss = torch.nn.functional.cross_entropy(logits, labels)
    run.optimizer.zero_grad()
    loss.backward()
    if run.clip:
      torch.nn.utils.clip_grad_norm_(run.network.parameters(), run.clip)
    run.optimizer.step()
    run.progress["step"] += 1
    losses.append(loss.item())
    hits, seen = hits + int((logits.argmax(1) == labels).sum()), seen + len(labels)
    if time.process_time() - cpu_at >= FLAGS.cap:
      break
  return float(np.mean(losses)), hits / seen, time.process_time() - cpu_at >= FLAGS.cap


def train(run, splits):
  """Trains until the rule stops it; returns 'cap' or 'patience'."""
  period = converge.eval_period(len(splits["train"]["labels"]), run.batch, FLAGS.eval_steps)
  cpu_at = time.process_time() - run.progress["cpu_s"]
  backup = os.path.join(FLAGS.out, "backup.pt")
  if run.progress["curve"] and (run.stall.stalled or run.progress["cpu_s"] >= FLAGS.cap):  # Resumed, and done.
    return "patience" if run.stall.stalled else "cap"
  while True:
    loss, train_top1, capped = train_period(run, splits["train"], period, cpu_at)
    eval_top1 = float((predict(run.network, run.model, splits["eval"]).argmax(1)
                       == splits["eval"]["labels"].numpy()).mean())
    if run.schedule:
      run.schedule.step(loss)
    progress = run.progress
    progress["cpu_s"] = time.process_time() - cpu_at
    progress["curve"].append((progress["step"], progress["cpu_s"], eval_top1))
    progress["train_top1"].append(train_top1)
    progress["lr"].append(run.optimizer.param_groups[0]["lr"])
    if run.stall.add(eval_top1):
      run.best = {k: v.clone() for k, v in run.network.state_dict().items()}
      progress["best_step"] = progress["step"]
    print(f"torch_train: {run.model} step {progress['step']} eval top-1 {eval_top1:.4f} train top-1 "
          f"{train_top1:.4f} loss {loss:.4f} lr {progress['lr'][-1]:.2e} CPU s {progress['cpu_s']:.0f}", flush=True)
    run.save(backup)
    if capped or run.stall.stalled:
      return "cap" if capped else "patience"


def main(_):
  torch.set_num_threads(FLAGS.threads)
  torch.set_num_interop_threads(FLAGS.threads)
  torch.manual_seed(FLAGS.seed)
  os.makedirs(FLAGS.out, exist_ok=True)
  splits, scale = load(FLAGS.data, FLAGS.model)
  classes = int(np.load(FLAGS.data)["classes"])
  side = splits["train"]["image"].shape[-1] if "image" in splits["train"] else 0
  run = Run(FLAGS.model, splits, classes, side)
  backup = os.path.join(FLAGS.out, "backup.pt")
  resumed = FLAGS.resume and os.path.exists(backup)
  if resumed:
    run.restore(backup)
  started = time.time()
  stopped_by = train(run, splits)
  run.network.load_state_dict(run.best)
  np.save(os.path.join(FLAGS.out, "test_probabilities.npy"), predict(run.network, FLAGS.model, splits["test"]))
  progress = run.progress
  summary = {"steps": progress["step"], "batch_size": run.batch, "fit_cpu_s": progress["cpu_s"],
             "fit_wall_s_last_process": time.time() - started, "resumed": resumed, "stopped_by": stopped_by,
             "curve": progress["curve"], "train_top1": progress["train_top1"], "lr": progress["lr"],
             "best_step": progress["best_step"], "params": sum(p.numel() for p in run.network.parameters()),
             "eval_period": converge.eval_period(len(splits["train"]["labels"]), run.batch, FLAGS.eval_steps),
             "stroke5_scale": scale, "torch": torch.__version__, "threads": torch.get_num_threads()}
  with open(os.path.join(FLAGS.out, "worker.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f)


if __name__ == "__main__":
  app.run(main)
