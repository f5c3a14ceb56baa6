"""Text in, token ids out: the gateway tokenises BYTES tensors so clients send plain sentences.

Each sentence is tokenised on its own and left unpadded; the batcher (``serving/text_batcher.py``)
groups sentences of equal or near-equal length, because padding a batch to its longest sentence made
batches slower than single sentences on this CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from wattgate.errors import BadRequest
from wattgate.tensors import Tensor

class TextPreprocessor:
    def __init__(self, tokenizer_file: str | Path, max_length: int, input_names: Sequence[str]) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.max_length = max_length
        self.input_names = list(input_names)

    def rows(self, inputs: Sequence[Tensor]) -> list[dict[str, np.ndarray]]:
        """One dict of [1, tokens] int64 arrays per sentence."""
        if len(inputs) != 1 or inputs[0].datatype != "BYTES":
            raise BadRequest("a text model takes one BYTES input of sentences")
        texts = []
        for raw in inputs[0].data.reshape(-1):
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise BadRequest("text must be UTF-8") from None
        out = []
        for enc in self.tokenizer.encode_batch(texts):
            arrays = {
                "input_ids": np.asarray([enc.ids], dtype=np.int64),
                "attention_mask": np.asarray([enc.attention_mask], dtype=np.int64),
                "token_type_ids": np.asarray([enc.type_ids], dtype=np.int64),
            }
            out.append({k: v for k, v in arrays.items() if k in self.input_names})
        return out
