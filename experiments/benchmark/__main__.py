"""The benchmark suite: train-step throughput, FLOP utilisation, PyTorch side by side, end to end, host input.

    python -m experiments.benchmark --out=experiments/results/benchmark/<machine>.json   # GPU: the full suite
    python -m experiments.benchmark --quick --out=...                                     # CPU-sized
    python -m experiments.benchmark --sections=vs_torch --out=...                         # JAX vs PyTorch, CPU

(a) steps: train-step images/s on synthetic batches already on the device, per preset x dtype x batch size,
    for the plain `jax.jit` step and the project's full step (device_steps.py), with achieved TFLOP/s
    against the measured matmul rate of the machine (matmul).
(b) e2e: end-to-end images/s of `train_and_evaluate` on a prepared dataset (end_to_end.py).
(c) torch: the same network's step in PyTorch (torch_net.py), channels_last, autocast on CUDA,
    torch.compile where it works; vs_torch: both frameworks side by side on the CPU at each crop, with and
    without LRN, in alternating rounds (vs_torch.py); layers: each layer's forward and backward alone in
    both, at the same crops (layers.py).
(d) pipeline: host input, decode rates and the training loader with 1 and N workers (host_input.py).
(e) variants: the project step of one configuration with each implementation option, and taken apart.
(f) flags: the project step re-measured in a fresh process per XLA_FLAGS set.
--sections picks and orders these. Every section is independent: one that fails records its error and the
run goes on; the JSON is rewritten after each section, so a run cut short keeps what it measured.
"""

import importlib.metadata
import json
import os
import platform
import sys
import time
import traceback

from absl import app, flags
import jax

from alexnet_jax import cli
from experiments.benchmark.sections import SECTIONS

flags.DEFINE_bool("quick", False, "CPU-sized: quarter width, small batches, few steps")
flags.DEFINE_string(
  "sections", "matmul,steps,torch,pipeline,e2e", f"comma-separated, run in this order; any of {', '.join(SECTIONS)}"
)
flags.DEFINE_string("presets", "owt,one_tower,paper", "presets of the steps, torch and variants sections")
flags.DEFINE_string("dtypes", "float32,bfloat16", "dtypes of the steps section")
flags.DEFINE_string("batch_sizes", "256,1024", "batch sizes of the steps section (the first: variants, flags)")
flags.DEFINE_string("extra_dtypes", "float32", "steps_extra: these dtypes at the first batch size")
flags.DEFINE_string("extra_batch_sizes", "1024", "steps_extra: these batch sizes in bfloat16")
flags.DEFINE_string(
  "model_options",
  "conv1_impl=auto,lrn_impl=auto,pool_impl=auto",
  "AlexNet options for plain and project steps, e.g. pool_impl=masked,conv1_impl=space_to_depth; the default is "
  "what training uses on this backend; also the base of every variant",
)
flags.DEFINE_string(
  "baseline_options",
  "default",
  "where they differ from --model_options, a second plain step with these options is timed beside the others "
  "('default': the model class's defaults, e.g. a direct conv1)",
)
flags.DEFINE_bool("project_only", False, "skip the plain jit reference step")
flags.DEFINE_string(
  "variants",
  "default;pool_impl=masked;conv1_impl=direct;conv1_impl=space_to_depth;lrn_impl=slices;lrn_impl=matmul;"
  "tower_impl=grouped;step=jit_sharded;step=jit;augment=off;metrics=loss;augment=off,metrics=loss,step=jit",
  "';'-separated option sets for the variants section, each over --model_options: model options, "
  "step=jit_sharded (jit over the devices' mesh instead of pmap) or step=jit (one device), augment=off "
  "(pre-cropped input), metrics=loss (loss only)",
)
flags.DEFINE_string("variants_dtype", "bfloat16", "dtype of the variants section")
flags.DEFINE_float("width", 1.0, "width multiplier of the steps, torch and variants sections")
flags.DEFINE_integer("steps", 20, "timed steps per round")
flags.DEFINE_integer("warmup", 3, "untimed steps before the rounds")
flags.DEFINE_integer("repeats", 3, "timed rounds per step (best counts)")
flags.DEFINE_integer("matmul_n", 8192, "side of the matmul section's square matrices")
flags.DEFINE_enum("torch", "auto", ["auto", "off"], "the torch section: run it where torch imports, or not")
flags.DEFINE_bool("torch_compile", False, "also time torch.compile (best mode counts)")
flags.DEFINE_bool("torch_first_batch_only", False, "the torch section at the first batch size only")
flags.DEFINE_string("vs_torch_crops", "67,115,227", "vs_torch: crop sides")
flags.DEFINE_float("vs_torch_width", 0.25, "vs_torch: width multiplier of the paper preset")
flags.DEFINE_integer("vs_torch_batch", 64, "vs_torch: batch size")
flags.DEFINE_integer("vs_torch_rounds", 6, "vs_torch: alternating rounds (best counts)")
flags.DEFINE_integer("vs_torch_steps", 0, "vs_torch: steps per round (0: about half a second of steps)")
flags.DEFINE_string(
  "vs_torch_variants",
  "conv1_impl=auto,lrn_impl=auto,pool_impl=auto;conv1_impl=direct,lrn_impl=slices,pool_impl=xla",
  "vs_torch: ';'-separated model option sets of the JAX side (the first: training's defaults)",
)
flags.DEFINE_string("pipeline_data_dir", "", "pipeline and e2e: a folder of prepared datasets")
flags.DEFINE_string("pipeline_name", "imagenette2_128", "pipeline and e2e: the dataset's name there")
flags.DEFINE_float("pipeline_seconds", 10.0, "per worker count: seconds of loader rounds, and as many of decode rounds")
flags.DEFINE_string("workers", "1,0", "pipeline: worker counts (0: all cores but one)")
flags.DEFINE_string("e2e_config", "configs/alexnet.py:imagenette", "e2e: the config")
flags.DEFINE_integer("e2e_steps", 0, "e2e: training steps (0: skip the section)")
flags.DEFINE_string("xla_flag_sets", "", "';'-separated XLA_FLAGS values for the flags section")
flags.DEFINE_float("flag_timeout_s", 240, "flags: seconds per flag set")
flags.DEFINE_string("out", "", "the JSON report (rewritten after each section)")
FLAGS = flags.FLAGS

VERSIONED = ("jaxlib", "flax", "optax", "tensorflow_datasets", "array_record", "torch", "cv2", "simplejpeg")


def machine_report(argv):
  """The command, machine, versions and time of this run: the report's header."""
  report = {
    "command": " ".join(["python -m experiments.benchmark"] + argv[1:]),
    "machine": {
      "platform": platform.platform(),
      "processor": platform.processor(),
      "cpus": os.cpu_count(),
      "devices": [str(d) for d in jax.devices()],
      "device_kind": jax.devices()[0].device_kind,
    },
    "versions": {"python": platform.python_version(), "jax": jax.__version__},
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    "errors": {},
  }
  for module in VERSIONED:
    try:
      imported = __import__(module)
      # array_record has no __version__: its installed distribution says it.
      report["versions"][module] = getattr(imported, "__version__", None) or importlib.metadata.version(
        module.replace("_", "-")
      )
    except Exception:  # not installed here: left out of the report
      pass
  return report


def save(report):
  if FLAGS.out:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w") as f:
      json.dump(report, f, indent=2)


def main(argv):
  if FLAGS.quick:
    FLAGS.width, FLAGS.batch_sizes, FLAGS.steps, FLAGS.warmup, FLAGS.matmul_n = 0.25, "32", 6, 2, 1024
    FLAGS.repeats = max(FLAGS.repeats, 5)
  sections = [x for x in FLAGS.sections.split(",") if x]
  unknown = set(sections) - set(SECTIONS)
  if unknown:
    raise app.UsageError(f"unknown sections {sorted(unknown)}: choose from {', '.join(SECTIONS)}")
  report = machine_report(sys.argv)
  m = report["machine"]
  print(
    f"machine: {m['device_kind']} x{len(m['devices'])}, {m['cpus']} cpus, jax {report['versions']['jax']}", flush=True
  )
  for section in sections:
    start = time.perf_counter()
    try:
      SECTIONS[section](FLAGS, report)
    except Exception:
      report["errors"][section] = traceback.format_exc()[-3000:]
      print(f"section {section} failed:\n{report['errors'][section]}", flush=True)
    report.setdefault("section_seconds", {})[section] = time.perf_counter() - start
    print(f"[{section}: {time.perf_counter() - start:.0f} s]", flush=True)
    save(report)
  if FLAGS.out:
    print("wrote", FLAGS.out)


if __name__ == "__main__":
  cli.run(main)
