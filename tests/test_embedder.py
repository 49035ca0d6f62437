"""The embedder on the real offline model: token paths, windows and late chunking."""

import numpy as np
import torch

from searchkit.config import ChunkingConfig
from searchkit.ingest.documents import record_document
from searchkit.ingest.embedding_pass import embed_documents
from searchkit.embedding.pooling import normalize
from spans import covers_exactly

LONG = " ".join(
    f"Paragraph {i} talks about rivers, bridges and the towns that grew along the water." for i in range(60))


def test_single_window_document_vector_equals_sentence_transformers(embedder):
    text = "Late chunking pools token embeddings over spans of one long pass."
    matrix = embedder.token_matrices([embedder.tokenize(text)])[0]
    ours = normalize(matrix.mean(axis=0))
    reference = embedder.model.encode([text], normalize_embeddings=True)[0]
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_long_late_chunking_on_a_fitting_document_equals_the_single_pass(embedder):
    tokens = embedder.tokenize("A short text that fits in one window easily.")
    single = embedder.token_matrices([tokens])[0]
    # Same document through a much larger window and a big overlap: still one window.
    windowed = embedder.token_matrices([tokens], window_tokens=200)[0]
    np.testing.assert_allclose(single, windowed, atol=1e-5)


def test_long_document_is_embedded_whole_across_windows(embedder):
    tokens = embedder.tokenize(LONG)
    assert len(tokens) > 3 * embedder.info.window_tokens
    matrix = embedder.token_matrices([tokens])[0]
    assert matrix.shape == (len(tokens) + 2, embedder.info.dimension)


def test_batching_does_not_change_results(embedder):
    texts = ["short one", LONG, "a medium sized sentence about bread and butter"]
    toks = [embedder.tokenize(t) for t in texts]
    together = embedder.token_matrices(toks)
    alone = [embedder.token_matrices([t])[0] for t in toks]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_chunk_offsets_map_back_to_the_chunk_text(embedder):
    doc = record_document("d", LONG)
    item = embed_documents(embedder, [doc], ChunkingConfig(mode="late", size=32))[0]
    tokens = embedder.tokenize(LONG)
    assert covers_exactly([(c.tok_start, c.tok_end) for c in item.chunks], len(tokens))
    for chunk in item.chunks:
        text = LONG[chunk.char_start:chunk.char_end]
        expected = embedder.tokenizer.decode(tokens.ids[chunk.tok_start:chunk.tok_end])
        assert " ".join(text.lower().split()) == expected.replace(" ,", ",").replace(" .", ".")


def test_late_chunk_vector_is_the_mean_of_its_span(embedder):
    doc = record_document("d", LONG)
    tokens = embedder.tokenize(LONG)
    matrix = embedder.token_matrices([tokens])[0]
    item = embed_documents(embedder, [doc], ChunkingConfig(mode="late", size=50), tokens=[tokens])[0]
    chunk = item.chunks[3]
    expected = normalize(matrix[chunk.tok_start + 1: chunk.tok_end + 1].mean(axis=0))
    np.testing.assert_allclose(chunk.vector, expected, atol=1e-5)
    np.testing.assert_allclose(item.vector, normalize(matrix.mean(axis=0)), atol=1e-5)


def test_naive_chunks_embed_each_span_alone(embedder):
    doc = record_document("d", LONG)
    item = embed_documents(embedder, [doc], ChunkingConfig(mode="naive", size=40))[0]
    chunk = item.chunks[2]
    alone = embedder.model.encode([LONG[chunk.char_start:chunk.char_end]], normalize_embeddings=True)[0]
    assert float(chunk.vector @ alone) > 0.99


def test_query_vectors_match_the_model(embedder):
    q = "where do rivers meet the sea"
    np.testing.assert_allclose(embedder.encode_queries([q])[0],
                               embedder.model.encode([q], normalize_embeddings=True)[0], atol=1e-5)


def test_one_query_runs_on_one_thread_and_matches_the_batch(embedder):
    before = torch.get_num_threads()
    queries = ["how do rivers shape towns", "bridges over water"]
    batch = embedder.encode_queries(queries)
    single = np.stack([embedder.encode_queries([q])[0] for q in queries])
    np.testing.assert_allclose(single, batch, atol=1e-5)
    assert torch.get_num_threads() == before


def test_loading_a_model_shows_no_weights_bar_unless_asked(capfd, monkeypatch):
    from transformers.utils import logging as hf_logging

    from searchkit.embedding.models import PROGRESS_ENV, bundled_folder, load_folder
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    was = hf_logging.is_progress_bar_enabled()   # the CLI turns the bars off for its process
    hf_logging.enable_progress_bar()
    try:
        load_folder(bundled_folder())
        assert "Loading weights" not in capfd.readouterr().err
        assert hf_logging.is_progress_bar_enabled()   # Hugging Face's own setting is left as found
        monkeypatch.setenv(PROGRESS_ENV, "0")          # asked for: the bar is Hugging Face's business
        load_folder(bundled_folder())
        assert "Loading weights" in capfd.readouterr().err
    finally:
        if not was:
            hf_logging.disable_progress_bar()
