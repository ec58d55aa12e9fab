"""Text tasks: tokenization shared by embedding and text classification."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ml_service.dataplane import InputInfo, OutputInfo, Signature
from ml_service.errors import InvalidInput, PayloadTooLarge
from ml_service.manifest import Manifest
from ml_service.tasks.base import ModelTask, Prepared, RequestBudget
from ml_service.tasks.classify import ENCODER_OUTPUT, Classifier, classifier_outputs

#: Characters kept per token of `max_tokens` before tokenizing. A WordPiece token covers ~4 characters of
#: English (at most 100: longer words become one [UNK]), so a text cut here still yields `max_tokens` tokens,
#: while a 50,000-character text no longer costs its whole tokenization to be cut at 256 tokens after.
CHARS_PER_TOKEN = 24


def text_input(manifest: Manifest) -> InputInfo:
    return InputInfo("text", "BYTES", (-1,), "text", manifest.limits.max_items)


class TextTask(ModelTask):
    """Tokenizes texts with a HF fast tokenizer (truncating at `max_tokens`) and pads per batch."""

    _tokenizer: Any = None
    _pad_id: int = 0

    @classmethod
    def prime(cls) -> None:
        """Build and run a two-word tokenizer: the tokenizers library's first use, once per process."""
        from tokenizers import Tokenizer
        from tokenizers.models import WordLevel
        from tokenizers.pre_tokenizers import Whitespace

        tok = Tokenizer(WordLevel({"[UNK]": 0, "warm": 1}, "[UNK]"))
        tok.pre_tokenizer = Whitespace()
        tok.encode_batch(["warm up", "warm"])

    def load(self) -> None:
        from tokenizers import Tokenizer

        path = self.entry.file(self.version, str(self.manifest.preprocessing.tokenizer))
        tok = Tokenizer.from_file(str(path))
        tok.no_padding()
        tok.enable_truncation(max_length=self.manifest.preprocessing.max_tokens)
        pad = tok.token_to_id("[PAD]")
        self._pad_id = 0 if pad is None else int(pad)
        self._tokenizer = tok

    @property
    def max_chars(self) -> int:
        """Characters of a text that are tokenized; the rest could not reach the model anyway."""
        return self.manifest.preprocessing.max_tokens * CHARS_PER_TOKEN

    def release_items(self) -> list[Any]:
        return ["release"]

    def warmup_items(self) -> list[Any]:
        pre, batching = self.manifest.preprocessing, self.manifest.batching
        n = max(1, min(batching.max_batch_size, batching.max_batch_tokens // pre.max_tokens))
        return ["warm up " * pre.max_tokens] * n  # the longest texts a batch can hold

    def check_item(self, item: Any, where: str) -> None:
        if not isinstance(item, str):
            raise InvalidInput(f"{where} must be a string, got {type(item).__name__}")
        if len(item) > self.limits.max_text_chars:
            raise PayloadTooLarge(
                f"{where} has {len(item)} characters; the limit is {self.limits.max_text_chars}"
            )

    def preprocess(self, items: Sequence[Any], budgets: Sequence[RequestBudget] | None = None
                   ) -> list[Prepared | Exception]:
        cap = self.max_chars
        cut = [len(t) > cap for t in items]
        encodings = self._tokenizer.encode_batch([t[:cap] if c else t for t, c in zip(items, cut, strict=True)])
        out: list[Prepared | Exception] = []
        for enc, was_cut in zip(encodings, cut, strict=True):
            ids = np.asarray(enc.ids, dtype=np.int64)
            truncated = bool(enc.overflowing) or was_cut
            out.append(Prepared(ids, cost=len(ids), meta={"tokens": len(ids), "truncated": truncated}))
        return out

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


def embedding_dim(manifest: Manifest) -> int:
    """The embedding width the manifest declares (last dim of the pooled output), -1 when unknown."""
    specs = {s.name: s for s in manifest.outputs}
    wanted = manifest.postprocessing.output
    spec = specs.get(wanted) if wanted else (manifest.outputs[0] if manifest.outputs else None)
    if spec is None or not spec.shape or spec.shape[-1] <= 0:
        return -1
    return spec.shape[-1]


class EmbeddingTask(TextTask):
    """Sentence embeddings: mean pooling over the attention mask and L2 normalization."""

    name = "embedding"

    @classmethod
    def signature(cls, manifest: Manifest, labels: Sequence[str]) -> Signature:
        return Signature((text_input(manifest),), (OutputInfo(ENCODER_OUTPUT, "FP32", (-1, embedding_dim(manifest))),),
                         "embedding")

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
        return [{ENCODER_OUTPUT: row} for row in out]


class TextClassificationTask(Classifier, TextTask):
    """Softmax over the classifier's logits; labels come from the model's labels file."""

    name = "text-classification"

    @classmethod
    def signature(cls, manifest: Manifest, labels: Sequence[str]) -> Signature:
        return Signature((text_input(manifest),), classifier_outputs(labels), "classification")

    def load(self) -> None:
        if not self.is_head:  # a head's texts are tokenized by its encoder's task: it needs no tokenizer
            super().load()

    def check_item(self, item: Any, where: str) -> None:
        super().check_item(item, where)
        if not item.strip():  # a label for nothing is a wrong answer; embedding "" stays allowed (as OpenAI)
            raise InvalidInput(f"{where} is empty; a classifier needs some text")


__all__ = ["EmbeddingTask", "TextClassificationTask", "TextTask", "embedding_dim"]
