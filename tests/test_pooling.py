import numpy as np
import pytest

from searchkit.embedding.pooling import plan_windows, pool_spans, stitch


@pytest.mark.parametrize("n, window, overlap", [(5, 10, 2), (8, 10, 2), (9, 10, 2), (100, 10, 3), (57, 16, 0)])
def test_windows_cover_every_token_once(n, window, overlap):
    plan = plan_windows(n, window, overlap)
    kept = [t for w in plan for t in range(w.keep, w.end)]
    assert kept == list(range(n))
    assert all(w.end - w.start <= window - 2 for w in plan)
    assert all(w.keep - w.start <= overlap for w in plan)


def test_stitch_takes_each_token_from_one_window_and_the_outer_special_tokens():
    n, window, overlap = 11, 6, 2
    plan = plan_windows(n, window, overlap)
    # Each window's output row encodes (window index, position) so provenance is visible.
    outputs = []
    for wi, w in enumerate(plan):
        rows = [[wi, -1]] + [[wi, t] for t in range(w.start, w.end)] + [[wi, 99]]
        outputs.append(np.array(rows, dtype=np.float32))
    tokens = stitch(plan, outputs)
    assert tokens.shape == (n + 2, 2)
    assert tokens[0].tolist() == [0, -1]                      # first window's [CLS]
    assert tokens[-1].tolist() == [len(plan) - 1, 99]          # last window's [SEP]
    assert tokens[1:-1, 1].tolist() == list(range(n))          # every content token once, in order
    # A token in an overlap comes from the earlier window (the later one's copy is dropped).
    assert tokens[1 + plan[1].start, 0] == 0


def test_pooled_vector_is_the_mean_of_its_span_with_specials_at_the_ends():
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(10 + 2, 4)).astype(np.float32)
    spans = [(0, 3), (3, 7), (7, 10)]
    pooled = pool_spans(tokens, spans)
    np.testing.assert_allclose(pooled[0], tokens[0:4].mean(0), rtol=1e-5)     # [CLS] + 3
    np.testing.assert_allclose(pooled[1], tokens[4:8].mean(0), rtol=1e-5)
    np.testing.assert_allclose(pooled[2], tokens[8:12].mean(0), rtol=1e-5)    # 3 + [SEP]


def test_spans_that_overlap_or_leave_gaps_pool_the_same_way():
    rng = np.random.default_rng(1)
    tokens = rng.normal(size=(10 + 2, 4)).astype(np.float32)
    pooled = pool_spans(tokens, [(0, 3), (2, 5), (7, 10)])  # not a tiling: the general path
    np.testing.assert_allclose(pooled[0], tokens[0:4].mean(0), rtol=1e-5)
    np.testing.assert_allclose(pooled[1], tokens[3:6].mean(0), rtol=1e-5)
    np.testing.assert_allclose(pooled[2], tokens[8:12].mean(0), rtol=1e-5)
