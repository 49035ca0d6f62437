"""Search filters: parsing, SQL, and filtered search in every mode and index type."""

import dataclasses
import os
import shutil
from datetime import datetime

import pytest

from searchkit import Filters, SearchIndex
from searchkit.config import AnnConfig
from searchkit.errors import FilterError
from searchkit.filters import Condition

from searchkit.config import MODES

# 80 records about rivers; metadata "n" numbers them, "era" and "tags" group them.
RIVERS = [{"id": f"r{i:02d}", "text": f"River report {i}: the river flooded the valley and the "
           f"water rose {i} metres before the levee held.",
           "metadata": {"n": i, "era": "old" if i < 20 else "new", "tags": ["flood", f"t{i % 3}"],
                        "ok": i % 2 == 0, "meta": {"region": "north" if i < 10 else "south"}}}
          for i in range(80)]


def test_where_strings_parse_to_typed_conditions():
    f = Filters.build(where=["year>=1900", "party=Republican", "ratio < 2.5", "draft=false",
                             "name!='Bob'", "a.b == \"x y\""])
    assert f.where == (Condition("year", ">=", 1900), Condition("party", "=", "Republican"),
                       Condition("ratio", "<", 2.5), Condition("draft", "=", False),
                       Condition("name", "!=", "Bob"), Condition("a.b", "=", "x y"))
    assert Filters.build(where={"party": "Republican"}).where == (Condition("party", "=", "Republican"),)
    assert Filters.build(type=["MD", ".htm", "txt,rst"]).kinds == ("md", "html", "txt", "rst")
    assert not Filters.build() and Filters.build(type="md")


def test_times_and_paths():
    day = Filters.build(since="2020-01-01", until="2020-01-01T12:00:00")
    assert day.until - day.since == 12 * 3600
    whole = Filters.build(since="2020-01-01", until="2020-01-01")
    assert whole.until - whole.since == 24 * 3600          # a date-only until includes the day
    assert Filters.build(since=datetime(2021, 5, 1)).since == datetime(2021, 5, 1).timestamp()
    assert Filters.build(since="1700000000").since == 1.7e9
    cwd = os.getcwd()
    assert Filters.build(path="docs/").paths == (f"{cwd}/docs/*",)
    assert Filters.build(path="*/19th-century/*").paths == ("*/19th-century/*",)
    assert Filters.build(path="notes[1].md").paths == (f"{cwd}/notes[1].md",)
    assert Filters.build(path="/data/a*b").paths == ("/data/a*b",)
    assert Filters.build(path="/data/x").paths == ("/data/x", "/data/x/*")


@pytest.mark.parametrize("kwargs, fragment", [
    ({"where": "year>>1900"}, "filter where 'year>>1900'"),
    ({"where": "year>="}, "filter where 'year>='"),
    ({"where": "=1900"}, "filter where '=1900'"),
    ({"where": 'a"b=1'}, "bad metadata key"),
    ({"where": "ok<true"}, "true/false only compare"),
    ({"where": [("n", "~", 1)]}, "unknown operator '~'"),
    ({"where": [("n", "=", float("nan"))]}, "not a finite number"),
    ({"where": [("n", "=", [1])]}, "value must be a number"),
    ({"type": "xlsx"}, "filter type 'xlsx'"),
    ({"type": ""}, "filter type ''"),
    ({"since": "yesterday"}, "filter since 'yesterday'"),
    ({"until": "2020-13-45"}, "filter until '2020-13-45'"),
    ({"since": "2021-01-01", "until": "2020-01-01"}, "since (2021-01-01) is not before until"),
    ({"path": ""}, "filter path ''"),
])
def test_malformed_filters_name_the_filter(kwargs, fragment):
    with pytest.raises(FilterError) as info:
        Filters.build(**kwargs)
    assert fragment in str(info.value)


@pytest.fixture
def config(fake_index_config):
    """Filters are the point here, not what a model understands: the fake embedder."""
    return fake_index_config


@pytest.fixture(scope="module")
def rivers(fake_config, tmp_path_factory):
    config = dataclasses.replace(fake_config, index=str(tmp_path_factory.mktemp("rivers") / "ix"))
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records(RIVERS)
    return config


def ns(hits):
    return sorted(h.metadata["n"] for h in hits)


@pytest.mark.parametrize("mode", MODES)
def test_k_is_honoured_under_filters(rivers, mode):
    with SearchIndex.open(config=rivers) as ix:
        hits = ix.search("river flood", mode=mode, k=10, filters={"where": "n>=25"})
        assert len(hits) == 10 and all(h.metadata["n"] >= 25 for h in hits)
        assert ns(ix.search("river", mode=mode, k=10, filters={"where": ["n>=5", "n<8"]})) == [5, 6, 7]
        assert ns(ix.search("river", mode=mode, k=40, filters={"where": {"era": "OLD"}})) == list(range(20))
        assert ns(ix.search("river", mode=mode, k=40, filters={"where": "tags=t1"})) == \
            [i for i in range(80) if i % 3 == 1]
        assert ns(ix.search("river", mode=mode, k=40, filters={"where": "ok=true"}))[:3] == [0, 2, 4]
        assert ns(ix.search("river", mode=mode, k=40, filters={"where": "meta.region=north"})) == \
            list(range(10))
        assert len(ix.search("river", mode=mode, k=70, filters={"where": "era!=old"})) == 60
        assert ix.search("river", mode=mode, filters={"where": "n>100"}) == []
        assert ix.search("river", mode=mode, filters={"where": "missing=1"}) == []
        assert ix.search("river", mode=mode, filters={"path": "*"}) == []  # records have no path
        chunks = ix.search("river", mode=mode, k=5, chunks=True, filters={"where": "n<3"})
        assert chunks and all(h.metadata["n"] < 3 for h in chunks)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_still_fill_k_under_a_selective_filter(rivers, tmp_path, kind):
    # nprobe=1 of 2 IVF lists and a tiny HNSW beam visit few vectors: the exact top-up from
    # SQLite must still fill k. The copy is rebuilt from its stored vectors, not re-embedded.
    shutil.copytree(rivers.index, tmp_path / kind)
    config = dataclasses.replace(rivers, index=str(tmp_path / kind),
                                 ann=AnnConfig(type=kind, nprobe=1, ef_search=1, hnsw_m=4))
    with SearchIndex.open(config=config) as ix:
        ix.rebuild(kind)
        assert ix.stats()["ann"]["documents"]["kind"] == kind
        for mode in ("dense", "hybrid"):
            hits = ix.search("levee", mode=mode, k=4, filters={"where": ["n>=37", "n<=39"]})
            assert ns(hits) == [37, 38, 39]
            hits = ix.search("levee", mode=mode, k=10, filters={"where": "n>=70"})
            assert ns(hits) == list(range(70, 80))


def test_path_type_time_and_front_matter_filters(config, corpus):
    os.utime(corpus / "volcano.txt", (1_600_000_000, 1_600_000_000))    # 2020-09-13
    os.utime(corpus / "orbit.rst", (1_700_000_000, 1_700_000_000))      # 2023-11-14
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        ix.add_records([("rec", "Sourdough notes kept as a record.", {"year": 2021})])
        names = lambda hits: sorted(os.path.basename(h.path or h.key) for h in hits)  # noqa: E731
        for mode in MODES:
            q = "bread lava chess orbit sourdough"
            assert names(ix.search(q, mode=mode, filters={"type": "md"})) == ["bread.md"]
            assert names(ix.search(q, mode=mode, filters={"type": ["rst", "html"]})) == \
                ["chess.html", "orbit.rst"]
            assert names(ix.search(q, mode=mode, filters={"type": "record"})) == ["rec"]
            assert names(ix.search(q, mode=mode, filters={"path": "*/corpus/*.txt"})) == ["volcano.txt"]
            assert names(ix.search(q, mode=mode, filters={"path": str(corpus)}))[:1] == ["bread.md"]
            assert names(ix.search(q, mode=mode, filters={"since": "2023-01-01"})) != []
            assert "volcano.txt" not in names(ix.search(q, mode=mode, filters={"since": "2021-01-01"}))
            assert names(ix.search(q, mode=mode, filters={"until": "2020-12-31"})) == ["volcano.txt"]
            assert names(ix.search(q, mode=mode, filters={"until": 1_600_000_000})) == []
            # Front matter of bread.md: cuisine: french, year: 2021; the record has year too.
            assert names(ix.search(q, mode=mode, filters={"where": "cuisine=french"})) == ["bread.md"]
            assert names(ix.search(q, mode=mode, filters={"where": "year>=2021"})) == ["bread.md", "rec"]
            assert names(ix.search(q, mode=mode, filters={"where": "year>=2021", "type": "md"})) == \
                ["bread.md"]
            assert ix.search(q, mode=mode, filters={"where": "year<2000"}) == []
        with pytest.raises(FilterError, match="unknown filter 'colour'"):
            ix.search("x", filters={"colour": "red"})
