#!/usr/bin/env bash
# The whole benchmark suite in one GPU run (experiments/results/benchmark/README.md has the results).
#
# On the workplace GPU machine (Python 3.12, jax with CUDA, no TensorFlow/TFDS): carry .whl/ (from
# ../shared/tools/device-wheels.sh) and data_prepared/ (the shared Imagenette prepared with
#   python -m alexnet_jax.data.prepare --source=folder:../shared/datasets/imagenette2-128 \
#     --name=imagenette2_128 --data_dir=data_prepared
# ), then run `bash experiments/gpu_suite.sh`. Results go to $OUT (default /tmp/bench_out).
# Sections run most important first and the JSON is rewritten after each, so a cut-short run keeps what
# it measured.
set -uo pipefail
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
OUT=${OUT:-/tmp/bench_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv \
  > "$OUT/nvidia_smi.csv" 2>&1
python3 experiments/benchmark.py \
  --sections=matmul,variants,steps,torch,pipeline,e2e,steps_extra,flags \
  --presets=owt,paper --dtypes=bfloat16 --batch_sizes=256 --extra_dtypes=float32 --extra_batch_sizes=1024 \
  --variants="pool_impl=masked;conv1_impl=space_to_depth;tower_impl=grouped;pool_impl=masked,conv1_impl=space_to_depth;step=jit" \
  --torch_compile --pipeline_data_dir=data_prepared --pipeline_seconds=3 --workers=1,4,0 \
  --e2e_config=configs/alexnet.py:imagenette,dtype=bfloat16,batch=256,workers=-1 --e2e_steps=300 \
  --xla_flag_sets="--xla_gpu_enable_command_buffer=;--xla_gpu_enable_triton_gemm=false;--xla_gpu_enable_cublaslt=true" \
  --flag_timeout_s=90 --out="$OUT/gpu.json" "$@" 2>&1 | tee "$OUT/log.txt"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv >> "$OUT/nvidia_smi.csv" 2>&1
