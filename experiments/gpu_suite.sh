#!/usr/bin/env bash
# The benchmark suite on the GPU machine, in two parts that each fit one device call (about 6 minutes of
# work each).
#
#   bash experiments/gpu_suite.sh a   # matmul rate, project vs plain steps, the step taken apart, PyTorch
#   bash experiments/gpu_suite.sh b   # host pipeline, steps again, end to end against both, XLA flag sets
#
# (float32 and batch 1024 rows: `bash experiments/gpu_suite.sh a --sections=steps_extra`, a later --sections
# replacing the part's own.)
#
# Extra arguments go to `python -m experiments.benchmark` (absl flags; the GPU machine has absl-py). On a
# GPU machine with Python 3.12 and jax with CUDA but no TensorFlow/TFDS: carry .whl/ (wheels of what it
# lacks, e.g. simplejpeg) and data_prepared/ (Imagenette2 at 128 px, prepared with
#   python -m alexnet_jax.data.prepare --source=folder:IMAGENETTE2_128_FOLDER \
#     --name=imagenette2_128 --data_dir=data_prepared
# ). Results go to $OUT (default /tmp/bench_out), as gpu_<part>.json and log_<part>.txt. The JSON is
# rewritten after each section, so a cut-short run keeps what it measured.
set -uo pipefail
PART=${1:-a}
shift || true
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
OUT=${OUT:-/tmp/bench_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv \
  > "$OUT/nvidia_smi_$PART.csv" 2>&1
lscpu > "$OUT/lscpu.txt" 2>&1
COMMON=(--presets=owt,paper --dtypes=bfloat16 --batch_sizes=256 --model_options=conv1_impl=auto,lrn_impl=auto,pool_impl=auto
        --baseline_options=default)
case "$PART" in
  a)
    # steps: the project's step (space-to-depth conv1 on GPUs) against plain jit steps of the same model
    # and of the plain direct-conv1 model; variants: each layer option, and the step without pmap,
    # augmentation or metrics, to see what each costs.
    python3 -m experiments.benchmark --sections=matmul,steps,variants,torch "${COMMON[@]}" \
      --variants="default;pool_impl=masked;conv1_impl=direct;lrn_impl=matmul;tower_impl=grouped;step=jit_sharded;step=jit;augment=off;metrics=loss;augment=off,metrics=loss,step=jit" \
      --torch_compile --out="$OUT/gpu_a.json" "$@" 2>&1 | tee "$OUT/log_a.txt"
    ;;
  b)
    # e2e is compared with the steps and pipeline rows of this same run (the end-to-end target).
    python3 -m experiments.benchmark --sections=pipeline,steps,e2e,flags "${COMMON[@]}" \
      --pipeline_data_dir=data_prepared --pipeline_seconds=3 --workers=1,4,8,0 \
      --e2e_config=configs/alexnet.py:imagenette,dtype=bfloat16,batch=256,workers=-1 --e2e_steps=300 \
      --xla_flag_sets="--xla_gpu_enable_triton_gemm=false;--xla_gpu_enable_cublaslt=true" \
      --flag_timeout_s=100 --out="$OUT/gpu_b.json" "$@" 2>&1 | tee "$OUT/log_b.txt"
    ;;
  *)
    echo "usage: bash experiments/gpu_suite.sh a|b [benchmark arguments]" >&2
    exit 2
    ;;
esac
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv \
  >> "$OUT/nvidia_smi_$PART.csv" 2>&1
