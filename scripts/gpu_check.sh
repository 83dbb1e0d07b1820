#!/usr/bin/env bash
# gpu_check.sh: everything issue 9 asks a GPU session to verify, in one run of <= 8 minutes.
#
#   On the CPU build machine (nvcc + cuDNN, no GPU):   bash scripts/gpu_check.sh --stage
#     configures build-gpu (CUDA on, Hopper only, no examples, no OpenCV; docs/cuda.md), builds
#     nexus_tests_cuda, gpu_backend and gpu_serving, and fills the git-ignored carry folder
#     .gpu/ with them, libfmt (the one library the GPU machine lacks) and the face models.
#
#   On the GPU machine, from the checkout root with .gpu/ beside it:   bash scripts/gpu_check.sh
#     1. env        nvidia-smi, driver, cuDNN found (env.txt)
#     2. tests      tests/cuda, every GPU test but [onnx] (cuda_tests.txt)
#     2b. onnx      tests/cuda [onnx]: ONNX's node tests of the importer's ops on the CudaBackend
#                   in FP32 and FP16 (cuda_onnx_node_tests.txt; REFUSED / FAIL lines name them)
#     3. pytorch    benchmarks/pytorch_baseline.py, FP16 (pytorch.json)
#     4. nexus      benchmarks/gpu_backend sweep, same batches, merged with 3 (nexus_gpu_backend.jsonl)
#     5. kernels    ncu per-kernel table of one FP16 batch of 32, ResNet-50 and MobileNetV1
#                   (kernels_<model>_fp16_b32.txt)
#     6. serving    benchmarks/gpu_serving: the Engine on every GPU, ResNet-50 FP16, SLO 50 ms,
#                   Poisson at 50/80/95 % of planned capacity, from the first request (serving.jsonl)
#     6b. prefix    benchmarks/prefix --device cuda: ResNet-50 variants with and without prefix
#                   batching, if time is left (prefix.jsonl; issue 12)
#     6c. prefix-engine  benchmarks/prefix --serve engine --device cuda: the Engine holding K = 1
#                   and 10 MobileNetV1 variants on the GPU (--memory-only: its reported device
#                   bytes, the group's runner in place of the members' backends; host RSS) and
#                   the Engine-served throughput rows; only the memory rows when time is short
#                   (prefix-engine.jsonl)
#     6d. profiles  tools/nexus-profile --device cuda --precision fp16: the simulator's H200 profile
#                   set re-measured, LeNet first (game's digits; issue 11), if time is left
#                   (profiles/*.json: commit them as sim/profiles/h200-<date>/)
#     7. compile    torch.compile(reduce-overhead) ResNet-50 b1/b32, if time is left (pytorch_compile.json)
#     8. report     summary.md + summary.json (scripts/gpu_report.py)
#   Every step has its own timeout, so one hang costs only that step. Results go to
#   $OUT/gpu-<date>-<gpu> when $OUT is set (the device tool brings $OUT back), else to
#   benchmarks/results/gpu-<date>-<gpu>. Commit that folder from the CPU machine.
#
#   Env: NEXUS_GPU_CHECK_BUDGET (seconds, default 470) caps the whole run.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [[ "${1:-}" == "--stage" ]]; then
  set -e
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-/work}
  launcher=()
  command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DNEXUS_WITH_CUDA=ON \
    -DNEXUS_CUDA_ARCHITECTURES=90 -DNEXUS_BUILD_EXAMPLES=OFF -DCMAKE_DISABLE_FIND_PACKAGE_OpenCV=ON \
    "${launcher[@]}" > /dev/null
  cmake --build build-gpu -j"${JOBS:-2}" --target nexus_tests_cuda gpu_backend gpu_serving prefix nexus-profile
  rm -rf .gpu
  mkdir -p .gpu/bin .gpu/lib .gpu/data/face-api/model
  cp build-gpu/tests/cuda/nexus_tests_cuda build-gpu/benchmarks/gpu_backend \
     build-gpu/benchmarks/gpu_serving build-gpu/benchmarks/prefix build-gpu/tools/nexus-profile .gpu/bin/
  cp -L /usr/lib/x86_64-linux-gnu/libfmt.so.9 .gpu/lib/
  # Also linked by the binaries when this machine has them (the GPU machine does not): spdlog
  # (logging), and for the ONNX node tests of tests/cuda the ONNX protobuf libraries.
  for lib in libspdlog.so.1.10 libonnx_proto.so.1 libprotobuf.so.32; do
    if [[ -e /usr/lib/x86_64-linux-gnu/$lib ]]; then cp -L /usr/lib/x86_64-linux-gnu/$lib .gpu/lib/; fi
  done
  # ONNX's node tests (Debian libonnx-testdata) of the ops the importer maps, for tests/cuda's
  # "[cuda][onnx]" test (NEXUS_ONNX_TESTDATA points there on the GPU machine; ~7 MB).
  node=/usr/share/libonnx-testdata/data/node
  if [[ -d $node ]]; then
    mkdir -p .gpu/data/onnx-node
    for d in $(ls "$node" | grep -E '^test_(add|sub|mul|div|clip|hardsigmoid|hardswish|sqrt|pow|convtranspose|conv|basic_conv|resize|upsample|transpose|matmul|pad|constant_pad|reduce_mean|slice|averagepool|maxpool|globalaveragepool|relu|leakyrelu|sigmoid|tanh|concat|softmax|gemm|flatten|reshape|squeeze|unsqueeze|identity|dropout|batchnorm)'); do
      cp -r "$node/$d" .gpu/data/onnx-node/
    done
  fi
  for m in ssd_mobilenetv1 face_recognition face_landmark_68 face_expression age_gender; do
    cp data/face-api/model/${m}_model* .gpu/data/face-api/model/ 2> /dev/null || true
  done
  git rev-parse HEAD > .gpu/commit
  du -sh .gpu
  echo "staged .gpu/ at $(cat .gpu/commit); on the GPU machine: bash scripts/gpu_check.sh"
  exit 0
fi

START=$(date +%s)
BUDGET=${NEXUS_GPU_CHECK_BUDGET:-470}
left() { echo $((BUDGET - ($(date +%s) - START))); }
# step_timeout CAP: the step's timeout, at most CAP and what is left (never below 5 s).
step_timeout() {
  local l
  l=$(left)
  local t=$(($1 < l ? $1 : l))
  echo $((t < 5 ? 5 : t))
}

[[ -x .gpu/bin/nexus_tests_cuda ]] || { echo "gpu_check: .gpu/bin missing: run scripts/gpu_check.sh --stage on the build machine and carry .gpu"; exit 2; }

# Libraries: ours first, the toolkit, then the cuDNN (and NVRTC, for cuDNN's runtime-fused
# engines) of the PyTorch wheel.
py_lib() { python3 -c "import $1 as m; print(list(m.__path__)[0] + '/lib')" 2> /dev/null; }
LIBS=$ROOT/.gpu/lib:/usr/local/cuda/lib64
for mod in nvidia.cudnn nvidia.cuda_nvrtc nvidia.cublas nvidia.cuda_runtime; do
  d=$(py_lib $mod) && [[ -d "$d" ]] && LIBS=$LIBS:$d
done
export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NEXUS_DATA_DIR=$ROOT/.gpu/data
if [[ -d $ROOT/.gpu/data/onnx-node ]]; then export NEXUS_ONNX_TESTDATA=$ROOT/.gpu/data/onnx-node; fi

GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -1)
SLUG=$(echo "${GPU:-unknown-gpu}" | tr 'A-Z' 'a-z' | sed 's/nvidia //; s/[^a-z0-9]\+/-/g; s/-$//')
NAME=gpu-$(date -u +%Y-%m-%d)-$SLUG
if [[ -n "${OUT:-}" ]]; then RES=$OUT/$NAME; else RES=$ROOT/benchmarks/results/$NAME; fi
mkdir -p "$RES"
log() { echo "[gpu_check $(($(date +%s) - START))s] $*" | tee -a "$RES/steps.txt"; }
log "GPU: ${GPU:-none}; results in $RES; budget ${BUDGET}s"

# 1. env
{
  echo "gpu: $GPU"
  echo "commit: $(cat .gpu/commit 2> /dev/null || git rev-parse HEAD 2> /dev/null)"
  nvidia-smi 2>&1 | head -20
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  python3 -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())" 2>&1
  ldd .gpu/bin/nexus_tests_cuda | grep -E "cudnn|cublas|cudart|fmt|not found"
} > "$RES/env.txt" 2>&1
log "env done"

# 2. tests/cuda (all GPU tests; the log shows the conv path of every layer for the pinned-path test)
timeout "$(step_timeout 130)" .gpu/bin/nexus_tests_cuda "~[onnx]" --reporter compact > "$RES/cuda_tests.txt" 2>&1
log "tests/cuda rc=$? ($(tail -1 "$RES/cuda_tests.txt"))"
# 2b. ONNX's node tests of the importer's ops on the CudaBackend, FP32 and FP16 (issue 13; the
#     PASS count, REFUSED / FAIL lines per node test and ops that never passed)
timeout "$(step_timeout 120)" .gpu/bin/nexus_tests_cuda "[onnx]" --reporter compact > "$RES/cuda_onnx_node_tests.txt" 2>&1
log "tests/cuda [onnx] rc=$? ($(grep 'ONNX node tests on the CudaBackend' "$RES/cuda_onnx_node_tests.txt" | tr '\n' ' '))"

BATCHES=1,8,32,64
MODELS=resnet50,mobilenet_v1,vgg16,googlenet,ssd_mobilenet_v1_300
# 3. PyTorch baseline (eager + CUDA Graphs), FP16
timeout "$(step_timeout 70)" python3 benchmarks/pytorch_baseline.py --precisions fp16 \
  --batches $BATCHES --models $MODELS --iters 20 --warmup 3 --out "$RES/pytorch.json" \
  > "$RES/pytorch.log" 2>&1
log "pytorch baseline rc=$?"

# 4. Nexus sweep, same models and batches, merged with the baseline
timeout "$(step_timeout 100)" .gpu/bin/gpu_backend --precisions fp16 --batches $BATCHES \
  --models $MODELS --iters 20 --warmup 3 --fused-budget 10 --pytorch "$RES/pytorch.json" \
  > "$RES/nexus_gpu_backend.jsonl" 2> "$RES/nexus_gpu_backend.log"
log "gpu_backend rc=$? ($(wc -l < "$RES/nexus_gpu_backend.jsonl") rows)"

# 5. per-kernel table of one batch of 32 (no CUDA Graph: the kernels one by one)
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for m in resnet50 mobilenet_v1; do
  timeout "$(step_timeout 35)" "$NCU" --profile-from-start off --clock-control none \
    --metrics gpu__time_duration.sum --csv --print-units base \
    .gpu/bin/gpu_backend --models $m --precisions fp16 --batches 32 --profile --fused-budget 10 \
    > "$RES/ncu_${m}_fp16_b32.csv" 2> "$RES/ncu_${m}.log"
  log "ncu $m rc=$?"
done

# 6. Engine serving from the first request
timeout "$(step_timeout 75)" .gpu/bin/gpu_serving --model resnet50 --slo-ms 50 \
  --loads 0.5,0.8,0.95 --seconds 5 --fused-budget 3 > "$RES/serving.jsonl" 2> "$RES/serving.log"
log "gpu_serving rc=$?"

# 6b. prefix batching (issue 12): ResNet-50 x K = 1, 2, 5, 10 seeded heads, with and without,
#     ℓ(b) measured on the GPU (FP32), serving in virtual time, device memory; only with time left
if (($(left) > 150)); then
  timeout "$(step_timeout 75)" .gpu/bin/prefix --device cuda --model resnet50 --runs 5 \
    --machine "${GPU:-unknown GPU}" > "$RES/prefix.jsonl" 2> "$RES/prefix.log"
  log "prefix rc=$? ($(wc -l < "$RES/prefix.jsonl") rows)"
else
  log "prefix skipped: $(left) s left"
fi

# 6c. prefix batching in the Engine (issue 12): the Engine on cuda:0 with K = 1, 10 MobileNetV1
#     variants, with and without prefix batching (the members' own backends released while the
#     group's runner holds the prefix once; engine_memory rows) and the Engine-served rows
#     (ℓ(b) measured on the GPU, served in virtual time); only the memory rows when time is short
if (($(left) > 150)); then
  timeout "$(step_timeout 75)" .gpu/bin/prefix --serve engine --device cuda --model mobilenet_v1 \
    --runs 3 --machine "${GPU:-unknown GPU}" > "$RES/prefix-engine.jsonl" 2> "$RES/prefix-engine.log"
  log "prefix --serve engine rc=$? ($(wc -l < "$RES/prefix-engine.jsonl") rows)"
elif (($(left) > 60)); then
  timeout "$(step_timeout 40)" .gpu/bin/prefix --memory-only --device cuda --model mobilenet_v1 \
    --machine "${GPU:-unknown GPU}" > "$RES/prefix-engine.jsonl" 2> "$RES/prefix-engine.log"
  log "prefix --memory-only rc=$?"
else
  log "prefix engine skipped: $(left) s left"
fi

# 6d. the simulator's H200 profiles (issue 11), re-measured on the backend as it is now: LeNet
#     (no H200 profile yet: game.json's digits use a stand-in) and the game/traffic models;
#     --min-gain -1 times every sparse batch up to 64 (a dip no longer ends the search)
if (($(left) > 90)); then
  mkdir -p "$RES/profiles"
  timeout "$(step_timeout 80)" .gpu/bin/nexus-profile --device cuda --precision fp16 \
    --model lenet,resnet50,face_recognition,googlenet,ssd_mobilenet_v1_300,mobilenet_v1 \
    --face-models .gpu/data/face-api/model --out "$RES/profiles" --max-batch 64 --min-gain -1 \
    --search-repeats 3 --repeats 10 > "$RES/profiles.log" 2>&1
  log "nexus-profile rc=$? ($(ls "$RES/profiles" | wc -l) profiles)"
else
  log "profiles skipped: $(left) s left"
fi

# 7. torch.compile (the next bar), only with time left
if (($(left) > 70)); then
  timeout "$(step_timeout 65)" python3 benchmarks/pytorch_baseline.py --precisions fp16 \
    --batches 1,32 --models resnet50 --iters 20 --warmup 3 --compile resnet50:1,resnet50:32 \
    --out "$RES/pytorch_compile.json" > "$RES/pytorch_compile.log" 2>&1
  log "torch.compile rc=$?"
else
  log "torch.compile skipped: $(left) s left"
fi

# 8. report
python3 scripts/gpu_report.py "$RES" > "$RES/report.log" 2>&1
log "report rc=$? -> $RES/summary.md"
cat "$RES/summary.md" 2> /dev/null
