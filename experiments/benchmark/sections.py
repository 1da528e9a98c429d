"""The benchmark's sections: each `section_<name>(flags, report)` measures one thing and adds its rows to
`report` (the JSON the run writes), printing a line per row."""

import importlib.util
import json
import os
import subprocess
import sys
import time

from alexnet_jax.data import pipeline
from alexnet_jax.model import models
from experiments.benchmark import device_steps, end_to_end, host_input, layers, vs_torch
from experiments.benchmark.timing import parse_options

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _list(text):
  return [item for item in text.split(",") if item]


def section_matmul(flags, report):
  report["matmul_tflops"] = {d: device_steps.matmul_tflops(d, flags.matmul_n) for d in ("float32", "bfloat16")}
  print("matmul TFLOP/s:", {k: round(v, 1) for k, v in report["matmul_tflops"].items()}, flush=True)


STEP_HEADER = (
  f"{'preset':10} {'dtype':9} {'batch':>5} {'plain img/s':>12} {'full img/s':>11} {'full/plain':>10} "
  f"{'GFLOP/img':>9} {'TFLOP/s':>8} {'plain%pk':>7} {'full%pk':>7} {'comp':>4} {'baseline img/s':>12} "
  f"{'full/base':>9}\n(plain: jit step of the same model; baseline: jit step of the model with "
  f"--baseline_options; GFLOP/img: the model's, counted from its jaxpr)"
)


def _step_rows(flags, report, presets, dtypes, batches):
  print(STEP_HEADER, flush=True)
  rows = report.setdefault("jax", [])
  peaks = report.get("matmul_tflops", {})
  for preset in presets:
    for dtype in dtypes:
      for batch in batches:
        r = device_steps.jax_steps(
          preset,
          dtype,
          batch,
          flags.width,
          flags.steps,
          flags.warmup,
          parse_options(flags.model_options),
          with_plain=not flags.project_only,
          repeats=flags.repeats,
          baseline_options=parse_options(flags.baseline_options),
        )
        r["of_matmul_peak"] = r["achieved_tflops"] / peaks.get(dtype, float("nan"))
        r["project_of_matmul_peak"] = r["project_tflops"] / peaks.get(dtype, float("nan"))
        rows.append(r)
        print(
          f"{preset:10} {dtype:9} {batch:5d} {r['plain_img_s']:12.0f} {r['full_img_s']:11.0f} "
          f"{r['full_over_plain']:10.2f} {r['train_gflop_per_img']:9.2f} {r['achieved_tflops']:8.1f} "
          f"{r['of_matmul_peak']:7.1%} {r['project_of_matmul_peak']:7.1%} {r['compiles_after_warmup']:4d} "
          f"{r['baseline_plain_img_s']:12.0f} {r['full_over_baseline_plain']:9.2f}",
          flush=True,
        )


def section_steps(flags, report):
  _step_rows(flags, report, _list(flags.presets), _list(flags.dtypes), [int(b) for b in _list(flags.batch_sizes)])


def section_steps_extra(flags, report):
  batches = [int(b) for b in _list(flags.batch_sizes)]
  _step_rows(flags, report, _list(flags.presets), _list(flags.extra_dtypes), batches[:1])
  _step_rows(flags, report, _list(flags.presets), ["bfloat16"], [int(b) for b in _list(flags.extra_batch_sizes)])


def section_torch(flags, report):
  if flags.torch == "off":
    return
  if importlib.util.find_spec("torch") is None:
    print("torch not importable: PyTorch comparison skipped", flush=True)
    return
  rows = report.setdefault("torch", [])
  modes = [False, True] if flags.torch_compile else [False]
  batches = [int(b) for b in _list(flags.batch_sizes)]
  for variant in [p for p in _list(flags.presets) if p in ("owt", "paper")]:
    for batch in batches[:1] if flags.torch_first_batch_only else batches:
      for compile_model in modes:
        try:
          r = vs_torch.torch_step(variant, batch, flags.width, flags.steps, flags.warmup, compile_model)
        except Exception as e:  # torch.compile can fail where eager works: keep the eager figure
          r = {"variant": variant, "batch": batch, "compiled": compile_model, "error": repr(e)[:300]}
          print(f"torch {variant} batch {batch} compiled={compile_model}: {r['error']}", flush=True)
          rows.append(r)
          continue
        # PyTorch autocasts to bf16 on CUDA only: compare like with like.
        dtype = "bfloat16" if r["device"] == "cuda" else "float32"
        jax_best = max(
          (
            j["full_img_s"]
            for j in report.get("jax", []) + report.get("variants", [])
            if (j["batch"], j["preset"], j["dtype"], j.get("step", "pmap")) == (batch, variant, dtype, "pmap")
          ),
          default=float("nan"),
        )
        r["jax_full_over_torch"] = jax_best / r["img_s"]
        rows.append(r)
        print(
          f"torch {variant:6} batch {batch} {'compiled' if compile_model else 'eager   '}: "
          f"{r['img_s']:.0f} img/s; best project step ({dtype}) / torch = {r['jax_full_over_torch']:.2f}",
          flush=True,
        )


def section_vs_torch(flags, report):
  variants = {spec: parse_options(spec) for spec in flags.vs_torch_variants.split(";")}
  rows = report.setdefault("vs_torch", [])
  for crop in [int(c) for c in _list(flags.vs_torch_crops)]:
    r = vs_torch.side_by_side(
      crop,
      flags.vs_torch_width,
      flags.vs_torch_batch,
      flags.vs_torch_rounds,
      flags.vs_torch_steps,
      flags.warmup,
      variants,
    )
    rows.append(r)
    print(
      f"crop {crop}: torch {r['torch_img_s']:.0f} img/s (no LRN {r['torch_no_lrn_img_s']:.0f}, LRN's share "
      f"{r['lrn_share']['torch']:.0%})",
      flush=True,
    )
    for name in variants:
      print(
        f"  jax {name:40} {r['img_s'][f'jax {name}']:7.0f} img/s, over torch {r['jax_over_torch'][name]:.2f}; "
        f"no LRN {r['img_s'][f'jax {name} no LRN']:.0f} ({r['jax_no_lrn_over_torch_no_lrn'][name]:.2f}); "
        f"LRN's share {r['lrn_share'][f'jax {name}']:.0%}",
        flush=True,
      )


def section_layers(flags, report):
  """Each layer's forward and backward alone, JAX against PyTorch, at every vs_torch crop (layers.py)."""
  options = parse_options(flags.vs_torch_variants.split(";")[0])
  model = models.AlexNet(
    preset="paper", num_classes=1000, width_multiplier=flags.vs_torch_width, **{**models.REFERENCE_IMPLS, **options}
  )
  rows = report.setdefault("layers", [])
  for crop in [int(c) for c in _list(flags.vs_torch_crops)]:
    steps = flags.vs_torch_steps or vs_torch.default_steps_per_round(crop)
    profile = layers.layer_profile(model, crop, flags.vs_torch_batch, flags.vs_torch_rounds, steps, flags.warmup)
    rows.append({"crop": crop, "options": options, "layers": profile})
    print(f"crop {crop}, batch {flags.vs_torch_batch}, ms forward + backward:", flush=True)
    for r in profile:
      print(f"  {r['layer']:6} {str(r['input']):22} jax {r['jax_ms']:8.2f}  torch {r['torch_ms']:8.2f}", flush=True)
    total = {f: sum(r[f"{f}_ms"] for r in profile) for f in ("jax", "torch")}
    print(f"  {'sum':29} jax {total['jax']:8.2f}  torch {total['torch']:8.2f}", flush=True)


def section_variants(flags, report):
  rows = report.setdefault("variants", [])
  batch = int(_list(flags.batch_sizes)[0])
  print(f"implementations, {flags.variants_dtype}, batch {batch} (project step):", flush=True)
  for preset in _list(flags.presets):
    for spec in flags.variants.split(";"):
      options = {**parse_options(flags.model_options), **parse_options(spec)}
      step_kind = options.pop("step", "pmap")
      augment_on_device = options.pop("augment", "on") != "off"
      metrics = options.pop("metrics", "all")
      if preset != "paper" and "tower_impl" in parse_options(spec):
        continue  # only the paper preset has towers
      r = device_steps.jax_steps(
        preset,
        flags.variants_dtype,
        batch,
        flags.width,
        flags.steps,
        flags.warmup,
        options,
        with_plain=False,
        step_kind=step_kind,
        repeats=flags.repeats,
        augment_on_device=augment_on_device,
        metrics=metrics,
      )
      r["variant"] = spec
      rows.append(r)
      print(
        f"  {preset:10} {spec:60} {r['full_img_s']:9.0f} img/s  compiles after warm-up: {r['compiles_after_warmup']}",
        flush=True,
      )


def section_pipeline(flags, report):
  if not flags.pipeline_data_dir:
    return
  workers = [int(w) or pipeline.default_num_workers() for w in _list(flags.workers)]
  report["pipeline"] = host_input.pipeline_rates(
    os.path.expanduser(flags.pipeline_data_dir), flags.pipeline_name, 128, flags.pipeline_seconds, workers
  )
  p = report["pipeline"]
  print(f"cpu topology: {p['cpu_topology']}", flush=True)
  for r in p["pipeline"]:
    print(
      f"host pipeline, {r['workers']} worker(s): {r['img_s']:.0f} img/s; one-core OpenCV decode in "
      f"alternating rounds {r['decode_one_core_img_s']:.0f} img/s: "
      f"{r['over_workers_x_decode']:.2f} x workers x one-core decode; the project's decoder "
      f"{r['decode_project_one_core_img_s']:.0f} img/s: {r['over_workers_x_project_decode']:.2f} x "
      f"workers x it; {r['workers']} processes "
      f"decoding at once {r['decode_n_processes_img_s']:.0f} img/s: {r['over_n_process_decode']:.2f} "
      f"of it; CPU cores busy: training process {r['training_process_cpu_cores']:.2f}, workers "
      f"{r['workers_cpu_cores']:.2f}",
      flush=True,
    )


def section_e2e(flags, report):
  if not (flags.e2e_steps and flags.pipeline_data_dir):
    return
  report["end_to_end"] = end_to_end.end_to_end(
    flags.e2e_config, os.path.expanduser(flags.pipeline_data_dir), flags.pipeline_name, flags.e2e_steps
  )
  e2e = end_to_end.end_to_end_against_limits(report)
  print(
    f"end to end ({flags.e2e_config}): {e2e['img_s_steady']:.0f} img/s steady; over the project step "
    f"of this run: {e2e.get('over_step', float('nan')):.2f}; over {e2e['workers']} workers x one-core "
    f"decode: {e2e.get('over_decode_limit', float('nan')):.2f} (OpenCV), "
    f"{e2e.get('over_project_decode_limit', float('nan')):.2f} (the project's decoder)",
    flush=True,
  )


def section_flags(flags, report):
  """The project step re-measured in a fresh process per XLA_FLAGS set (XLA reads them once, at start)."""
  rows = report.setdefault("xla_flag_sweep", [])
  batch = _list(flags.batch_sizes)[0]
  for flag_set in [f for f in flags.xla_flag_sets.split(";") if f.strip()]:
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + flag_set).strip())
    out = os.path.join(os.path.dirname(os.path.abspath(flags.out or ".")) or ".", ".flags_tmp.json")
    cmd = [
      sys.executable,
      "-m",
      "experiments.benchmark",
      "--sections=steps",
      "--project_only",
      "--dtypes=bfloat16",
      f"--presets={flags.presets}",
      f"--batch_sizes={batch}",
      f"--steps={flags.steps}",
      f"--warmup={flags.warmup}",
      f"--repeats={flags.repeats}",
      f"--model_options={flags.model_options}",
      f"--width={flags.width}",
      f"--out={out}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPOSITORY, capture_output=True, text=True, timeout=flags.flag_timeout_s)
    entry = {"xla_flags": flag_set, "returncode": proc.returncode, "seconds": time.perf_counter() - start}
    if proc.returncode == 0:
      with open(out) as f:
        entry["rows"] = [{k: r[k] for k in ("preset", "batch", "full_img_s")} for r in json.load(f)["jax"]]
      os.remove(out)
    else:
      entry["error"] = proc.stderr[-600:]
    rows.append(entry)
    shown = (
      ", ".join(f"{r['preset']} {r['full_img_s']:.0f}" for r in entry.get("rows", [])) or entry.get("error", "")[-200:]
    )
    print(f"XLA_FLAGS={flag_set!r}: {shown} img/s", flush=True)


SECTIONS = {
  "matmul": section_matmul,
  "steps": section_steps,
  "torch": section_torch,
  "vs_torch": section_vs_torch,
  "layers": section_layers,
  "variants": section_variants,
  "pipeline": section_pipeline,
  "e2e": section_e2e,
  "steps_extra": section_steps_extra,
  "flags": section_flags,
}
