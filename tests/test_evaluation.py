"""``searchkit eval`` end to end on a tiny BEIR folder written here, through CliRunner."""

import json

import pytest
from click.testing import CliRunner

from searchkit.cli import main
from searchkit.evaluation.runner import EVAL_MODES, folder_name, index_settings
from searchkit.config import Config

DOCS = {
    "volcano": "Volcanoes form where magma reaches the surface; an eruption throws ash and lava.",
    "bread": "Mix flour, water and salt with a sourdough starter, let it rise, then bake the loaf.",
    "chess": "The Sicilian Defence answers the king's pawn with c5; castling protects the king.",
    "orbit": "A Hohmann transfer moves a spacecraft between two circular orbits with two burns.",
}
QUERIES = {"q1": "lava and ash from a mountain", "q2": "baking bread at home",
           "q3": "chess opening against e4", "q4": "changing a satellite's orbit"}


@pytest.fixture
def beir(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in DOCS.items()))
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in QUERIES.items()))
    pairs = [("q1", "volcano"), ("q2", "bread"), ("q3", "chess"), ("q4", "orbit")]
    (folder / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in pairs))
    return folder


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_eval_prints_every_mode_and_reuses_its_indexes(beir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    args = ["eval", beir, "--model", "all-MiniLM-L6-v2", "--chunk-size", "32", "--work-dir", work]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("mode"))):]
    assert [line.split()[0] for line in table[1:]] == list(EVAL_MODES)
    for line in table[1:]:
        assert float(line.split()[1]) == pytest.approx(1.0)      # nDCG@10: trivially separable
    # One folder per index variant, named by its settings, kept and reused.
    assert sorted(p.name for p in work.iterdir()) == sorted({
        "all-MiniLM-L6-v2_wmax_o0_first1_nochunks", "all-MiniLM-L6-v2_wmax_o64_late-fixed32",
        "all-MiniLM-L6-v2_wmax_o64_naive-fixed32", "all-MiniLM-L6-v2_wmax_o0_late-fixed32"})
    again = invoke(*args, "--json", "--modes", "late,rerank", "-q")
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert list(data["results"]) == ["late", "rerank"]
    assert data["results"]["rerank"]["ndcg@10"] == pytest.approx(1.0)
    assert data["queries"] == 4 and data["documents"] == 4
    assert all(ix["embedded"] == 0 and ix["unchanged"] == 4 for ix in data["indexes"].values())


def test_eval_errors_are_one_line(beir, tmp_path):
    (beir / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tnowhere\t1\n")
    result = invoke("eval", beir, "--model", "all-MiniLM-L6-v2")
    assert result.exit_code == 1
    assert "qrels.tsv:2" in result.output and "'nowhere'" in result.output
    result = invoke("eval", beir, "--modes", "late,bogus")
    assert result.exit_code == 1 and "unknown eval mode bogus" in result.output


def test_index_variants_are_named_by_their_settings():
    names = {m: folder_name(index_settings(Config(), EVAL_MODES[m])) for m in EVAL_MODES}
    assert names["doc-long"] == names["late-long"] == names["rerank"]
    assert len(set(names.values())) == 4


def test_eval_names_index_folders_after_the_model_that_embeds(beir, tmp_path, monkeypatch):
    """A missing model falls back to the bundled one; the kept folder must say so in its name."""
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    result = invoke("eval", beir, "--model", "no-such-org/no-such-model", "--modes", "doc-first",
                    "--work-dir", work, "--json", "-q")
    assert result.exit_code == 0, result.output
    assert [p.name for p in work.iterdir()] == ["all-MiniLM-L6-v2_wmax_o0_first1_nochunks"]
    assert json.loads(result.output)["model"].endswith("all-MiniLM-L6-v2")
