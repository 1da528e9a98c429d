"""Weights between PyTorch and Flax: a torchvision `alexnet()` state_dict <-> the `owt` preset's params.

torchvision's AlexNet is the "one weird trick" variant (preset 'owt'); its ImageNet weights are the one
widely available pretrained AlexNet. Two layouts differ:
  * convolution kernels are [out, in, kh, kw] in PyTorch and [kh, kw, in, out] (HWIO) in Flax;
  * fc6 reads the flattened pool5 maps: PyTorch flattens NCHW (channel-major), Flax NHWC (channel-minor),
    so fc6's 9216 input rows are permuted from (c, h, w) order to (h, w, c) order.
The input side must also match: torchvision normalises RGB in [0, 1] with its own mean/std, so feed the
converted model images prepared the same way to reproduce torchvision's logits. So must dropout: torchvision's
is inverted, `AlexNet(preset='owt', dropout_scaling='in_training')`, as the owt config sets it.
"""

import numpy as np

# torchvision.models.AlexNet: features.{0,3,6,8,10} are the convs, classifier.{1,4,6} the linears.
TORCHVISION_LAYERS = {
  "conv1": "features.0",
  "conv2": "features.3",
  "conv3": "features.6",
  "conv4": "features.8",
  "conv5": "features.10",
  "fc6": "classifier.1",
  "fc7": "classifier.4",
  "fc8": "classifier.6",
}


def _numpy(tensor):
  """A torch tensor or array as a float32 numpy array."""
  if hasattr(tensor, "detach"):  # a torch tensor, without importing torch here
    tensor = tensor.detach().cpu().numpy()
  return np.asarray(tensor, dtype=np.float32)


def torchvision_to_flax(state_dict, *, pool5_hw=(6, 6)):
  """Converts torchvision `alexnet()` weights to the params of `AlexNet(preset='owt')`.

  Args:
    state_dict: a torchvision `alexnet()` state_dict (torch tensors or arrays), e.g. `torch.load(PATH)`.
    pool5_hw: the spatial size of the maps in front of fc6 (6x6 for torchvision's 224 input and its
      adaptive 6x6 average pool).

  Returns:
    {'params': {layer: {'kernel', 'bias'}}} of float32 arrays, for `AlexNet(preset='owt',
    num_classes=<fc8's rows>, dropout_scaling='in_training')`.

  Raises:
    KeyError: `state_dict` lacks some of torchvision's layers (the message lists them).
  """
  missing = [
    f"{prefix}.{kind}"
    for prefix in TORCHVISION_LAYERS.values()
    for kind in ("weight", "bias")
    if f"{prefix}.{kind}" not in state_dict
  ]
  if missing:
    raise KeyError(
      f"Not a torchvision alexnet() state_dict: missing {missing}. Expected the keys of "
      f"torchvision.models.alexnet().state_dict()."
    )
  params = {}
  for name, prefix in TORCHVISION_LAYERS.items():
    weight = _numpy(state_dict[f"{prefix}.weight"])
    bias = _numpy(state_dict[f"{prefix}.bias"])
    if name.startswith("conv"):
      kernel = weight.transpose(2, 3, 1, 0)  # [out, in, kh, kw] -> [kh, kw, in, out]
    elif name == "fc6":
      channels = weight.shape[1] // (pool5_hw[0] * pool5_hw[1])
      kernel = (
        weight.reshape(weight.shape[0], channels, *pool5_hw)  # [out, c, h, w]
        .transpose(2, 3, 1, 0)  # [h, w, c, out]
        .reshape(-1, weight.shape[0])
      )
    else:
      kernel = weight.T
    params[name] = {"kernel": np.ascontiguousarray(kernel), "bias": bias}
  return {"params": params}


def flax_to_torchvision(params, *, pool5_hw=(6, 6)) -> dict:
  """Converts the params of `AlexNet(preset='owt')` to torchvision `alexnet()` weights (the inverse of
  `torchvision_to_flax`). torchvision's net computes the same logits where the Flax net's dropout is
  torchvision's (`dropout_scaling='in_training'`): section 4.2's halving at test is not in it.

  Args:
    params: the network's params, with or without the 'params' level.
    pool5_hw: the spatial size of the maps in front of fc6 (6x6 at the owt preset's 224 input).

  Returns:
    A torchvision `alexnet()` state_dict of float32 numpy arrays: wrap each in `torch.from_numpy` to
    `load_state_dict` it into `torchvision.models.alexnet()`.

  Raises:
    KeyError: `params` lacks some of the owt preset's layers (the message lists them).
  """
  params = params.get("params", params)
  missing = [name for name in TORCHVISION_LAYERS if name not in params]
  if missing:
    raise KeyError(f"Not the params of AlexNet(preset='owt'): missing {missing} (it has {sorted(params)}).")
  state_dict = {}
  for name, prefix in TORCHVISION_LAYERS.items():
    kernel = np.asarray(params[name]["kernel"], np.float32)
    if name.startswith("conv"):
      weight = kernel.transpose(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]
    elif name == "fc6":
      out = kernel.shape[1]
      channels = kernel.shape[0] // (pool5_hw[0] * pool5_hw[1])
      weight = (
        kernel.reshape(*pool5_hw, channels, out)  # [h, w, c, out]
        .transpose(3, 2, 0, 1)  # [out, c, h, w]
        .reshape(out, -1)
      )
    else:
      weight = kernel.T
    state_dict[f"{prefix}.weight"] = np.ascontiguousarray(weight)
    state_dict[f"{prefix}.bias"] = np.asarray(params[name]["bias"], np.float32)
  return state_dict
