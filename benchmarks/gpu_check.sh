#!/usr/bin/env bash
# edgeinfer's llama.cpp GPU path on an NVIDIA machine with no network access (see gpu_check.py).
# Run from the folder holding .gpu/ (made by `python benchmarks/gpu_check.py prepare`):
#   bash .gpu/gpu_check.sh            OUT=where logs go (default ./gpu-check-out)
#   DRY=1 bash .gpu/gpu_check.sh      the steps that need no GPU, on any machine (a tiny model)
#   SKIP=1 ...                        reuse a llama-cpp-python already built into /tmp/site
set -u
export PYTHONUNBUFFERED=1
G=$(cd "$(dirname "$0")" && pwd); OUT=${OUT:-$(pwd)/gpu-check-out}; mkdir -p "$OUT"; L=$OUT/log.txt
exec > >(tee -a "$L") 2>&1
t0=$(date +%s); s(){ echo "== [$(( $(date +%s)-t0 ))s] $*"; }
s "machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
nproc; python3 -c "import torch,transformers,onnxruntime as o;print(torch.__version__,transformers.__version__,o.__version__)"
if [ -z "${DRY:-}" ]; then
  s "wheels"; python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$G"/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
  if [ -z "${SKIP:-}" ]; then
    s "build llama-cpp-python with CUDA (sm_90)"; mkdir -p /tmp/b && tar xzf "$G/llama-src.tgz" -C /tmp/b
    CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_NCCL=OFF -DGGML_CUDA_FA=OFF -DLLAVA_BUILD=OFF -DGGML_NATIVE=ON" \
      CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python3 -m pip install -q --no-index --no-deps --no-build-isolation \
      --target /tmp/site /tmp/b/llama_cpp_python-* > "$OUT/build.txt" 2>&1 || { tail -40 "$OUT/build.txt"; exit 1; }
  fi
  s "edgeinfer"; mkdir -p /tmp/ei && tar xzf "$G/edgeinfer-src.tgz" -C /tmp/ei
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site /tmp/ei > "$OUT/ei.txt" 2>&1 || { tail -20 "$OUT/ei.txt"; exit 1; }
fi
python3 -c "import llama_cpp, edgeinfer.cli; print('llama-cpp-python', llama_cpp.__version__, 'GPU offload:', llama_cpp.llama_supports_gpu_offload())" || exit 1
ei(){ python3 -m edgeinfer "$@"; }
W=/tmp/gpu-check; mkdir -p $W
s "a Llama-shaped folder (random weights, SmolLM2's tokenizer; 1.1B, or tiny with DRY)"
python3 - "$G/tok" "$W/llama" <<'PY'
import os, shutil, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
dry = bool(os.environ.get("DRY"))
cfg = LlamaConfig(vocab_size=49152, hidden_size=64 if dry else 2048, intermediate_size=128 if dry else 8192,
                  num_hidden_layers=2 if dry else 16, num_attention_heads=32, num_key_value_heads=8,
                  max_position_embeddings=4096, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
LlamaForCausalLM(cfg).to(torch.float16).save_pretrained(sys.argv[2], safe_serialization=True)
for f in os.listdir(sys.argv[1]): shutil.copy(os.path.join(sys.argv[1], f), sys.argv[2])
PY
s "export GGUF F16 (its self-check loads it)"; ei export $W/llama -o $W/f16.gguf --force; echo "exit $?"
s "quantize Q4_K_M"; ei quantize $W/f16.gguf -o $W/q4km.gguf --method Q4_K_M --force; echo "exit $?"
s "load settings one by one, then GPU figures"; python3 "$G/gpu_check.py" measure --out "$OUT" --model $W/q4km.gguf
DEV=$([ -z "${DRY:-}" ] && echo "--device jetson-orin" || echo "")
s "bench ($DEV)"; ei bench $W/q4km.gguf $DEV; echo "exit $?"
s "run"; ei run $W/q4km.gguf --prompt "The capital of France is" --max-tokens 16 $DEV; echo "exit $?"
s "fit"; ei fit $W/q4km.gguf $DEV --ctx 4096; echo "exit $?"
s "serve, one request"; PORT=18765; python3 -m edgeinfer serve $W/q4km.gguf --port $PORT $DEV --ctx 512 & SRV=$!
for i in $(seq 1 120); do kill -0 $SRV 2>/dev/null || break; curl -sf http://127.0.0.1:$PORT/v1/models >/dev/null && break; sleep 1; done
curl -s http://127.0.0.1:$PORT/v1/completions -H 'Content-Type: application/json' -d '{"prompt": "Hello", "max_tokens": 8}'; echo
kill -INT $SRV; wait $SRV; echo "serve exit $?"
s "optimize for jetson-orin, then verify"; timeout 900 python3 -m edgeinfer optimize $W/f16.gguf $DEV -o $W/bundle --max-kld 0.5 --force; echo "exit $?"
[ -d $W/bundle ] && { ei verify $W/bundle; echo "verify exit $?"; }
nvidia-smi --query-gpu=memory.used --format=csv 2>/dev/null
s "done: $OUT/gpu.json (record it here: python benchmarks/gpu_check.py record gpu.json)"
