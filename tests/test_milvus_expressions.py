"""Filters compiled to Milvus expressions: escaping, path globs, metadata facets."""

from __future__ import annotations

import json

import pytest

from searchkit.errors import FilterError
from searchkit.filters import Filters

pytest.importorskip("pymilvus", reason="pip install -e '.[milvus]'")

from searchkit.backends.milvus.expressions import compile_filters, facets, fold, literal  # noqa: E402


def test_literals_are_json_escaped():
    assert literal('a"b\\c\n') == json.dumps('a"b\\c\n')
    assert literal(1900) == "1900.0"
    assert literal(True) == "true"


def test_a_where_value_cannot_break_out_of_its_string():
    hostile = 'x" or 1==1 or "'
    expr = compile_filters(Filters.build(where=[("title", "=", hostile)]))
    # The whole value is one JSON string literal: its quote is escaped, not closing.
    assert json.dumps(hostile.lower()) in expr
    assert expr.count('"x') == 1 and '\\"' in expr


def test_a_key_cannot_break_out_of_its_path():
    with pytest.raises(FilterError):
        Filters.build(where='a"]==1 or facets["b=1')


def test_plain_path_is_the_file_or_anything_under_it():
    expr = compile_filters(Filters.build(path="/docs/a_b%"))
    assert expr == '(path == "/docs/a_b%" or (path >= "/docs/a_b%/" and path < "/docs/a_b%0"))'


def test_folder_glob_is_a_prefix_range():
    assert compile_filters(Filters.build(path="/docs/")) == '(path >= "/docs/" and path < "/docs0")'


def test_other_globs_need_general_like():
    f = Filters.build(path="*/notes_?.md")
    assert compile_filters(f) == r'path like "%/notes\\__.md"'  # \_ literal, _ for ?
    with pytest.raises(FilterError, match="matches paths only by prefix"):
        compile_filters(f, general_like=False, server="Milvus v2.3.5")


def test_character_classes_are_refused():
    with pytest.raises(FilterError, match=r"character classes"):
        compile_filters(Filters.build(path="*/[ab]*.md"))


def test_type_and_time():
    expr = compile_filters(Filters.build(type=["md", "txt"], since=10, until=20))
    assert expr == ('(kind == "md" or kind == "txt") and (has_mtime == true and mtime >= 10.0) '
                    'and (has_mtime == true and mtime < 20.0)')


def test_facets_walk_lists_objects_and_nested_keys():
    f = facets({"tags": ["War", "economy", 3], "year": 1900, "author": {"name": "Lincoln"},
                "ok": True, "a.b": 1, "none": None})
    assert f["tags"] == {"n": [3.0], "n_min": 3.0, "n_max": 3.0,
                         "t": ["economy", "war"], "t_min": "economy", "t_max": "war"}
    assert f["author.name"]["t"] == ["lincoln"]
    assert f["author"]["t"] == ["lincoln"]        # an object's values, as json_each walks them
    assert f["ok"] == {"b": [True]}
    assert "a.b" not in f and "none" not in f


def test_fold_lowers_ascii_only():
    # SQLite's NOCASE folds A-Z only; Milvus compares bytes, so only ASCII is lowered.
    assert fold("ÉCOLE Zoo") == "École zoo"


@pytest.mark.parametrize("where, expected", [
    ("year>=1950", 'facets["year"]["n_max"] >= 1950.0'),
    ("year<1950", 'facets["year"]["n_min"] < 1950.0'),
    ("tags=War", 'json_contains(facets["tags"]["t"], "war")'),
    ("tags!=war", '(not json_contains(facets["tags"]["t"], "war"))'),
    ("flag=true", 'json_contains(facets["flag"]["b"], true)'),
    ("author.name>=L", 'facets["author.name"]["t_max"] >= "l"'),
])
def test_conditions(where, expected):
    assert compile_filters(Filters.build(where=where)) == expected
