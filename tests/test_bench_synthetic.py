"""The synthetic MiniLM collection of the benchmarks (benchmarks/synthetic_docs.py ``--vectors
minilm``): tokens take their line's real sentence vector, and the index it builds opens and
searches with the real model like any other."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from searchkit import SearchIndex
from searchkit.config import Config, ModelConfig
from searchkit.embedding.models import BUNDLED_NAME

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from synthetic_docs import LineEmbedder  # noqa: E402

LINES = ["The volcano erupted, throwing ash and lava over the town.",
         "Sourdough bread rises overnight before it is baked.",
         "A satellite stays in orbit because its speed balances gravity."]


@pytest.fixture(scope="module")
def embedder() -> LineEmbedder:
    return LineEmbedder(LINES)


def test_each_token_has_its_lines_sentence_vector(embedder):
    text = "\n".join([LINES[0], LINES[2], LINES[0]])
    tokens = embedder.truncate(embedder.tokenize(text))
    matrix = embedder.token_matrices([tokens])[0]
    assert matrix.shape == (len(tokens) + 2, embedder.info.dimension)
    assert not matrix[0].any() and not matrix[-1].any()   # the special tokens add nothing
    second = text.index(LINES[2])
    for row, (start, _) in zip(matrix[1:-1], tokens.offsets):
        line = LINES[2] if second <= start < second + len(LINES[2]) else LINES[0]
        np.testing.assert_array_equal(row, embedder.vectors[embedder.index[line]])
    # A line's vector is the real model's embedding of that line.
    np.testing.assert_allclose(embedder.vectors[embedder.index[LINES[1]]],
                               embedder.encode_queries([LINES[1]])[0], atol=1e-5)


def test_the_index_opens_with_the_real_model_and_finds_by_meaning(embedder, tmp_path):
    config = Config(index=str(tmp_path / "ix"), model=ModelConfig(name=BUNDLED_NAME))
    records = [(f"syn{i}", "\n".join(LINES[i:] + LINES[:i]), {}) for i in range(3)]
    records.append(("volcano", LINES[0], {}))
    with SearchIndex.open(config=config, create=True, embedder=embedder) as ix:
        ix.add_records(records)
    with SearchIndex.open(tmp_path / "ix") as ix:
        assert ix.model_info.name == BUNDLED_NAME
        hits = ix.search("an eruption of lava", k=2, mode="dense")
        assert hits[0].key == "volcano"
        assert hits[0].passage is not None and "volcano" in hits[0].passage.text
