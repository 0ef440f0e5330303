#!/usr/bin/env bash
# GPU benchmarks, for a session that is lent a GPU machine (one H100/H200). Under 8 minutes.
#   1. ViT-B-32 full fine-tuning step in bf16: ours vs open_clip's own step, same batch (goal >= 0.95x)
#   2. render_views views/s on NVIDIA EGL, 12 views at 224^2 (goal >= 5,000 views/s), vs pyrender
#   3. Recall@K at 50k x 50k: our blockwise CPU path vs a dense torch top-k on the GPU (is a GPU path worth it?)
# Run from the repository root on the GPU machine: bash benchmarks/gpu_check.sh [OUT_DIR]
# The machine has torch, numpy, pytest and pytest-benchmark; carry the rest as wheels (.whl/, see the
# device tool's README): open_clip_torch ftfy regex sacred pymongo trimesh moderngl glcontext pyrender
# pycocoevalcap scikit-learn peft, and the EGL loader debs (.gl/) for NVIDIA EGL.
# Results: $OUT_DIR/*.json and *.log; copy the figures into docs/PERFORMANCE.md with the device name.
set -uo pipefail
out=${1:-${OUT:-gpu_check_out}}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if [ -d .gl ]; then for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/device.txt"
bench() { timeout "$1" python3 -m pytest -q -p no:cacheprovider -o python_files='bench_*.py' "${@:2}"; }

echo "== 1. ViT-B-32 bf16 train step vs open_clip" | tee "$out/train.log"
CLIP3D_BENCH_DEVICE=cuda CLIP3D_BENCH_MODEL=ViT-B-32 CLIP3D_BENCH_BATCH=${BATCH:-256} \
  bench 240 benchmarks/bench_train.py -k full_step --benchmark-json "$out/train.json" 2>&1 | tee -a "$out/train.log"

echo "== 2. NVIDIA EGL render views/s" | tee "$out/render.log"
python3 -c "import renderers.gl as g; c = g.create_context(); print(c.info['GL_RENDERER'])" 2>&1 | tee -a "$out/render.log"
bench 120 benchmarks/bench_render.py -k vs_pyrender --benchmark-json "$out/render.json" 2>&1 | tee -a "$out/render.log"

echo "== 3. Recall@K 50k x 50k: blockwise CPU vs dense GPU top-k" | tee "$out/recall.log"
timeout 120 python3 - <<'PY' 2>&1 | tee -a "$out/recall.log"
import time, numpy as np, torch
from harness.metrics.retrieval import evaluate_retrieval
n, d, ks = 50_000, 256, (1, 5, 10)
rng = np.random.default_rng(0)
img = rng.standard_normal((n, d), dtype=np.float32); txt = img + rng.standard_normal((n, d), dtype=np.float32)
shape = np.arange(n)
t = time.perf_counter(); ours = evaluate_retrieval(img, txt, shape, shape, ks=ks); cpu_s = time.perf_counter() - t
a = torch.nn.functional.normalize(torch.from_numpy(img).cuda(), dim=1)
b = torch.nn.functional.normalize(torch.from_numpy(txt).cuda(), dim=1)
torch.cuda.synchronize(); t = time.perf_counter()
hits = {k: 0 for k in ks}
for s in range(0, n, 8192):
    top = (a[s:s + 8192] @ b.T).topk(max(ks), dim=1).indices
    want = torch.arange(s, min(s + 8192, n), device="cuda")[:, None]
    for k in ks:
        hits[k] += int((top[:, :k] == want).any(1).sum())
torch.cuda.synchronize(); gpu_s = time.perf_counter() - t
print({"cpu_blockwise_s": round(cpu_s, 2), "gpu_dense_topk_s": round(gpu_s, 3),
       "i2t_R@k_cpu": [round(ours[f"i2t_R@{k}"], 4) for k in ks],
       "i2t_R@k_gpu": [round(hits[k] / n, 4) for k in ks]})
PY
echo "done: results in $out"
