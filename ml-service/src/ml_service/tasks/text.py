"""Text tasks: tokenization shared by embedding and text classification."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ml_service.errors import InvalidInput, PayloadTooLarge
from ml_service.tasks.base import ItemResult, Options, Prepared, Task
from ml_service.tasks.classify import Classifier, classification_entry, parse_top_k


class TextTask(Task):
    """Tokenizes texts with a HF fast tokenizer (truncating at `max_tokens`) and pads per batch."""

    data_keys = ("text", "texts")
    _tokenizer: Any = None
    _pad_id: int = 0

    def load(self) -> None:
        from tokenizers import Tokenizer

        path = self.entry.file(self.version, str(self.manifest.preprocessing.tokenizer))
        tok = Tokenizer.from_file(str(path))
        tok.no_padding()
        tok.enable_truncation(max_length=self.manifest.preprocessing.max_tokens)
        pad = tok.token_to_id("[PAD]")
        self._pad_id = 0 if pad is None else int(pad)
        self._tokenizer = tok

    def warmup_items(self) -> list[Any]:
        return ["warm up"]

    def check_item(self, item: Any, where: str) -> None:
        if not isinstance(item, str):
            raise InvalidInput(f"{where} must be a string, got {type(item).__name__}")
        if len(item) > self.limits.max_text_chars:
            raise PayloadTooLarge(
                f"{where} has {len(item)} characters; the limit is {self.limits.max_text_chars}"
            )

    def preprocess(self, items: Sequence[Any]) -> list[Prepared | Exception]:
        encodings = self._tokenizer.encode_batch(list(items))
        out: list[Prepared | Exception] = []
        for enc in encodings:
            ids = np.asarray(enc.ids, dtype=np.int64)
            out.append(Prepared(ids, cost=len(ids), meta={"tokens": len(ids), "truncated": bool(enc.overflowing)}))
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts as the model sees them (after truncation)."""
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts))]

    def collate(self, batch: Sequence[Prepared]) -> dict[str, np.ndarray]:
        n = len(batch)
        width = max(len(p.features) for p in batch)
        ids = np.full((n, width), self._pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        for i, p in enumerate(batch):
            k = len(p.features)
            ids[i, :k] = p.features
            mask[i, :k] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def _seed_meta(result: ItemResult) -> dict[str, Any]:
    entry: dict[str, Any] = {"tokens": result.meta.get("tokens")}
    if result.meta.get("truncated"):
        entry["truncated"] = True
    return entry


class EmbeddingTask(TextTask):
    """Sentence embeddings: mean pooling over the attention mask and L2 normalization."""

    name = "embedding"

    def postprocess(
        self, outputs: dict[str, np.ndarray], feeds: dict[str, np.ndarray], batch: Sequence[Prepared]
    ) -> list[dict[str, np.ndarray]]:
        out = outputs[self.output_name(outputs)].astype(np.float32, copy=False)
        if out.ndim == 3:  # token embeddings: pool them here
            mask = feeds["attention_mask"].astype(np.float32)[..., None]
            out = (out * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        if self.manifest.postprocessing.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.clip(norms, 1e-12, None)
        return [{"embedding": row} for row in out]

    def format_seed(self, result: ItemResult, options: Options) -> dict[str, Any]:
        return {"embedding": result.outputs["embedding"], **_seed_meta(result)}


class TextClassificationTask(Classifier, TextTask):
    """Softmax over the classifier's logits, with labels and top-k."""

    name = "text-classification"

    def format_seed(self, result: ItemResult, options: Options) -> dict[str, Any]:
        entry = classification_entry(result.outputs["probabilities"], self.labels, options.top_k)
        return {**entry, **_seed_meta(result)}


__all__ = ["EmbeddingTask", "TextClassificationTask", "TextTask", "classification_entry", "parse_top_k"]
