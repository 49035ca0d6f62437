"""Adaptive fusion, the default hybrid ranking: the arithmetic on hand-made candidate lists,
then real retrieval with the bundled MiniLM, where it must find both a needle that only
BM25 sees and a paraphrase that only the vectors see."""

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from searchkit import SearchIndex
from searchkit.cli import main
from searchkit.config import SearchConfig
from searchkit.errors import InputError
from searchkit.evaluation.runner import EVAL_MODES
from searchkit.retrieval import fusion
from searchkit.backends.base import ChunkRow, passage_bm25
from searchkit.retrieval.fusion import SHIPPED, first_stage, gather, second_stage


def rank(ev, scores):
    return ev.ids[np.argsort(-scores, kind="stable")].tolist()


def test_gather_lines_up_the_lists_with_floors():
    ev = gather({"dense": {1: 0.9, 2: 0.5}, "late": {2: 0.8, 3: 0.7},
                 "keyword": {3: 10.0, 1: 5.0}}, depth=50)
    assert ev.ids.tolist() == [1, 2, 3]
    assert ev.scores.shape == ev.present.shape == (3, 3) and ev.tops.shape == (3, 50)
    # Missing from a vector list: that list's lowest score. Missing from a BM25 list shorter
    # than asked: 0 (it matched no term).
    assert ev.scores.tolist() == [[0.9, 0.7, 5.0], [0.5, 0.8, 0.0], [0.5, 0.7, 10.0]]
    assert ev.present.tolist() == [[True, False, True], [True, True, False], [False, True, True]]
    assert ev.tops[2, :3].tolist() == [10.0, 5.0, 0.0] and ev.sizes.tolist() == [2, 2, 2]
    # A full BM25 list (as long as asked) floors at its own lowest score.
    full = gather({"dense": {1: 0.9, 2: 0.5}, "keyword": {1: 4.0}}, depth=1)
    assert full.scores[1, 2] == 4.0 and full.tops.shape == (3, 2)


def test_empty_and_one_sided_lists():
    ev = gather({}, depth=10)
    assert ev.ids.shape == (0,) and ev.scores.shape == (0, 3)
    assert first_stage(ev).shape == (0,) and second_stage(first_stage(ev), np.zeros(0)).shape == (0,)
    # No keyword match at all: the vectors alone decide.
    ev = gather({"dense": {1: 0.4, 2: 0.6}, "late": {1: 0.5, 2: 0.7}, "keyword": {}}, depth=10)
    assert rank(ev, second_stage(first_stage(ev), np.zeros(2))) == [2, 1]


def test_keyword_weight_follows_how_far_bm25s_first_stands_out():
    dense = {1: 0.60, 2: 0.52}
    late = {1: 0.60, 2: 0.52}
    # BM25 barely prefers 2 (5% ahead): the vectors' clear favourite stays first.
    flat = gather({"dense": dense, "late": late, "keyword": {2: 10.0, 1: 9.5}}, depth=10)
    assert rank(flat, first_stage(flat)) == [1, 2]
    # BM25's first is far ahead (a rare term matched, as in a needle lookup): it wins.
    sharp = gather({"dense": dense, "late": late, "keyword": {2: 10.0, 1: 5.0}}, depth=10)
    assert rank(sharp, first_stage(sharp)) == [2, 1]
    # Same evidence, same scores, every time; equal evidence ties in candidate order.
    assert np.array_equal(first_stage(sharp), first_stage(sharp))
    tie = gather({"dense": {5: 0.5, 4: 0.5}, "late": {5: 0.5, 4: 0.5}, "keyword": {}}, depth=10)
    scores = first_stage(tie)
    assert scores[0] == scores[1] and rank(tie, scores) == [5, 4]


def test_passage_bm25_reorders_only_the_head():
    weights = dataclasses.replace(SHIPPED, head=2)
    first = np.array([0.9, 0.8, 0.7])
    passage = np.array([0.0, 10.0, 50.0])   # the third is outside the head: never read
    final = second_stage(first, passage, weights)
    assert final[2] == first[2] and final[0] == first[0]
    assert final[1] > final[0]                # a decisive best passage lifts its document


def test_passage_bm25_without_backend_windows_is_the_best_chunk():
    # A backend that cannot score two-chunk windows (no passage_bm25 of its own) lets each
    # document's best single chunk stand for its best passage.
    class RowsOnly:
        def __init__(self, found):
            self.found = found

        def keyword_chunks(self, text, doc_ids=None, limit=None, filters=None):
            return {c: s for c, s in self.found.items() if c // 10 in doc_ids}

        def chunks(self, ids):
            return {i: ChunkRow(i, i // 10, 0, 0, 1, 0, 1) for i in ids}

    view = RowsOnly({10: 5.0, 12: 4.0, 21: 6.0, 30: 9.0})
    chunks, best = passage_bm25(view, "pass key", [1, 2])
    assert chunks == {10: 5.0, 12: 4.0, 21: 6.0} and best == {1: 5.0, 2: 6.0}
    assert passage_bm25(RowsOnly({}), "pass key", [1]) == ({}, {})


def test_shipped_weights_are_plain_numbers():
    values = dataclasses.asdict(SHIPPED)
    assert all(isinstance(v, (int, float)) for v in values.values())
    assert 0 <= SHIPPED.late_share <= 1 and 0 <= SHIPPED.keyword_low <= SHIPPED.keyword_high <= 1


def test_adaptive_is_the_default_and_the_others_stay_selectable():
    assert SearchConfig().fusion == "adaptive" and SearchConfig().mode == "hybrid"
    assert EVAL_MODES["default"].settings["search.fusion"] == "adaptive"


# -- real retrieval with MiniLM ---------------------------------------------------------------

FILLER = [
    "The committee reviewed the annual budget and approved new funding for roads and schools.",
    "Farmers reported a good harvest this year thanks to steady rain in the spring months.",
    "The museum opened a new wing dedicated to paintings from the early modern period.",
    "Engineers inspected the bridge and recommended replacing several of its steel cables.",
    "The city council debated a plan to extend the tram line to the northern suburbs.",
    "Doctors urged residents to get vaccinated before the start of the winter flu season.",
    "Hikers crossed the mountain on a path of loose rock and reached the hut from the east.",
    "Trade grew steadily as new ports opened and shipping costs fell across the region.",
]
NAMES = ["Walter Reed", "Olivia Reed", "Alice Turner", "Walter Turner"]


def haystack(i: int) -> str:
    """About 700 words of look-alike filler; the first four hide one pass key each, so a
    document vector (pooled over its windows) hardly sees it."""
    text = [FILLER[(i + j) % len(FILLER)] for j in range(6 * len(FILLER))]
    if i < len(NAMES):
        key = 31000 + 17 * i
        text.insert(11 + 5 * i, f"{NAMES[i]}'s pass key is {key}. Remember it. {key} is the pass "
                                f"key for {NAMES[i]}.")
    return " ".join(text)


TOPIC_DOCS = {
    "volcano": "Volcanoes form where magma from the mantle reaches the surface. Pressure builds in "
               "the chamber until an eruption throws ash, lava and gas into the air.",
    "sourdough": "Mix flour, water and salt with an active starter, let the dough rise overnight, "
                 "shape the loaf and bake it in a hot Dutch oven until the crust is dark.",
    "orbit": "A Hohmann transfer moves a spacecraft between two circular orbits with two engine "
             "burns; the forward speed of a satellite balances the pull of gravity.",
}


@pytest.fixture(scope="module")
def mixed_index(tmp_path_factory, minilm_config):
    folder = tmp_path_factory.mktemp("fusion") / "ix"
    records = [{"id": f"hay{i}", "text": haystack(i)} for i in range(8)]
    records += [{"id": k, "text": v} for k, v in TOPIC_DOCS.items()]
    with SearchIndex.open(folder, config=minilm_config, create=True) as ix:
        ix.add_records(records)
    return folder, minilm_config


def test_default_finds_needles_and_paraphrases(mixed_index):
    folder, config = mixed_index
    with SearchIndex.open(folder, config=config) as ix:
        # Needles: names share first and last names across documents, so only the document
        # holding both, next to "pass key", is right.
        for i, name in enumerate(NAMES):
            hits = ix.search(f"what is the pass key for {name}?", k=3)
            assert hits[0].key == f"hay{i}", (name, [h.key for h in hits])
            assert set(hits[0].scores) >= {"dense", "keyword"}
        # Paraphrases that share few or no words with their page.
        paraphrases = (("molten rock erupting from a mountain", "volcano"),
                       ("how do I make a loaf at home", "sourdough"),
                       ("bakers kneading at home in the morning", "sourdough"))
        for query, key in paraphrases:
            assert ix.search(query, k=3)[0].key == key, query
        # Each kind needs the other list: vectors alone miss a needle, BM25 alone a paraphrase.
        assert any(ix.search(f"what is the pass key for {name}?", mode="dense")[0].key != f"hay{i}"
                   for i, name in enumerate(NAMES))
        assert any([h.key for h in ix.search(q, mode="keyword")][:1] != [key] for q, key in paraphrases)
        # The default equals asking for it; the old fusions stay selectable.
        query = "what is the pass key for Alice Turner?"
        assert [h.key for h in ix.search(query)] == [h.key for h in ix.search(query, fusion="adaptive")]
        for other in ("weighted", "rrf"):
            assert ix.search(query, fusion=other, k=3)
            # Each fusion scores on its own scale (RRF: at most 2 / 61).
            assert ix.search(query)[0].score != pytest.approx(ix.search(query, fusion=other)[0].score)
        with pytest.raises(InputError, match="adaptive, weighted, rrf"):
            ix.search(query, fusion="bogus")


def test_cli_fusion_choice(mixed_index):
    folder, _ = mixed_index
    for fusion_name in ("adaptive", "weighted", "rrf"):
        result = CliRunner().invoke(main, ["query", "what is the pass key for Olivia Reed?",
                                           "--index", str(folder), "--fusion", fusion_name,
                                           "--json", "-k", "2"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["hits"]


def test_fusion_module_has_no_model_or_storage_imports():
    assert not {"torch", "faiss", "sqlite3"} & set(vars(fusion))
