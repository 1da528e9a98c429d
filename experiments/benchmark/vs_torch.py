"""Section (c): the same AlexNet's training step in PyTorch (torch_net.TorchAlexNet), and `vs_torch`, the
side-by-side run of both frameworks on one network per crop.

`side_by_side` times, in alternating rounds (the best round of each counts), the project's train step
(steps.train_step under jit: model, loss, SGD with momentum 0.9 and the paper's weight decay in PyTorch's
coupled form, metrics) and PyTorch's step of the same network, batch, dtype (float32) and input (already
cropped, no augmentation), each with and without LRN, so that LRN's share of each step comes from the
same rounds."""

import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax.model import models
from alexnet_jax.training import optim
from experiments.benchmark import device_steps
from experiments.benchmark.timing import timed


def torch_training_step(net, batch, image_size, device, channels_last, bf16_autocast=False, compiled=False):
  """(run one step, wait for the device) of SGD (momentum 0.9, weight decay 5e-4) on `net`, one fixed batch."""
  import torch  # noqa: PLC0415 (optional: PyTorch)

  torch.backends.cudnn.benchmark = True  # PyTorch's fastest convolution algorithms for these shapes
  net = net.to(device).train()
  x = torch.randn(batch, 3, image_size, image_size, device=device)
  if channels_last:
    net, x = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
  y = torch.randint(0, net.fc8.out_features, (batch,), device=device)
  opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
  model = torch.compile(net) if compiled else net

  def run():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16_autocast):
      loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()

  # Queued without waiting, like the JAX steps: CUDA runs them in order, one sync ends each round.
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  return run, sync


def torch_step(variant, batch, width, steps, warmup, compile_model):
  """Images/s of PyTorch's training step of preset `variant` at its canonical size (section c); autocast
  to bf16 on CUDA, float32 on the CPU."""
  import torch  # noqa: PLC0415 (optional: PyTorch)

  from experiments.benchmark import torch_net  # noqa: PLC0415 (it imports PyTorch)

  device = "cuda" if torch.cuda.is_available() else "cpu"
  model = models.AlexNet(preset=variant, num_classes=1000, width_multiplier=width)
  size = models.canonical_image_size(variant)
  net = torch_net.TorchAlexNet(model, size)
  run, sync = torch_training_step(net, batch, size, device, True, device == "cuda", compile_model)
  seconds = timed(run, steps, warmup, sync=sync)
  return {
    "variant": variant,
    "batch": batch,
    "width": width,
    "compiled": compile_model,
    "device": device,
    "img_s": batch / seconds,
  }


def jax_training_step(model, batch, image_size, warmup):
  """(run one step, wait) of the project's train step (steps.train_step, jitted on one device, state
  donated) on one fixed already-cropped float32 batch, with PyTorch's SGD rule (coupled weight decay)."""
  rng = np.random.default_rng(0)
  fixed = {
    "image": jnp.asarray(rng.normal(size=(batch, image_size, image_size, 3)), jnp.float32),
    "label": jnp.asarray(rng.integers(0, model.num_classes, batch), jnp.int32),
  }
  tx = optim.sgd(lambda count: 0.01, weight_decay_mode="coupled")
  run, sync, _ = device_steps.project_runner(
    model, image_size, jnp.float32, lambda devices, on_device: fixed, jax.random.key(1), warmup, "jit", False, "all", tx
  )
  return run, sync


def default_steps_per_round(crop: int) -> int:
  """About half a second of the CPU's step per round at each crop (the step's cost grows as crop^2)."""
  return max(2, round(45000 / crop**2))


def side_by_side(
  crop, width, batch, rounds, steps, warmup, jax_variants, torch_layouts=("channels_last", "contiguous")
):
  """One row per crop: images/s of every JAX variant ({name: model options}) and PyTorch layout, each with
  and without LRN, best of `rounds` alternating rounds of `steps` steps; the ratios and LRN's shares."""
  import torch  # noqa: PLC0415 (optional: PyTorch)

  from experiments.benchmark import torch_net  # noqa: PLC0415 (it imports PyTorch)

  steps = steps or default_steps_per_round(crop)
  runners = {}
  for lrn in (True, False):
    suffix = "" if lrn else " no LRN"
    for name, options in jax_variants.items():
      model = models.AlexNet(
        preset="paper",
        num_classes=1000,
        width_multiplier=width,
        use_lrn=lrn,
        init_scheme="he",
        **{**models.REFERENCE_IMPLS, **options},
      )
      runners[f"jax {name}{suffix}"] = jax_training_step(model, batch, crop, warmup)
    for layout in torch_layouts:
      model = models.AlexNet(preset="paper", num_classes=1000, width_multiplier=width, use_lrn=lrn)
      run, sync = torch_training_step(
        torch_net.TorchAlexNet(model, crop), batch, crop, "cpu", layout == "channels_last"
      )
      timed(run, 0, warmup, repeats=0, sync=sync)
      runners[f"torch {layout}{suffix}"] = (run, sync)
  best = dict.fromkeys(runners, float("inf"))
  for _ in range(rounds):
    for name, (run, sync) in runners.items():
      best[name] = min(best[name], timed(run, steps, 0, repeats=1, sync=sync))
  img_s = {name: batch / seconds for name, seconds in best.items()}
  torch_best = max(img_s[f"torch {layout}"] for layout in torch_layouts)
  torch_best_no_lrn = max(img_s[f"torch {layout} no LRN"] for layout in torch_layouts)
  return {
    "crop": crop,
    "width": width,
    "batch": batch,
    "rounds": rounds,
    "steps_per_round": steps,
    "torch_threads": torch.get_num_threads(),
    "jax_variants": jax_variants,
    "img_s": img_s,
    "torch_img_s": torch_best,
    "torch_no_lrn_img_s": torch_best_no_lrn,
    "jax_over_torch": {name: img_s[f"jax {name}"] / torch_best for name in jax_variants},
    "jax_no_lrn_over_torch_no_lrn": {name: img_s[f"jax {name} no LRN"] / torch_best_no_lrn for name in jax_variants},
    "lrn_share": {
      **{f"jax {name}": 1 - img_s[f"jax {name}"] / img_s[f"jax {name} no LRN"] for name in jax_variants},
      "torch": 1 - torch_best / torch_best_no_lrn,
    },
  }
