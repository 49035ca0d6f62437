"""`searchkit serve`: every endpoint, the auth model and hostile requests, through FastAPI's
TestClient; the Python client and `query --server` against a real uvicorn server; `serve` as
a process stopped with SIGTERM. The index is built once with the offline MiniLM and copied
for each test; the loaded model is shared so no test loads it again."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from fastapi.testclient import TestClient

import searchkit
from searchkit import SearchIndex
from searchkit.cli import main
from searchkit.config import ServerConfig
from searchkit.embedding.embedder import Embedder
from searchkit.backends.local.locking import WriteLock
from searchkit.server import create_app

from conftest import TOPICS

REPO = Path(__file__).resolve().parent.parent
RECORDS = [
    {"id": "hostile", "title": "<img src=x onerror=alert(2)> Pirate notes",
     "text": "Hostile markup <script>alert(1)</script> sits in this note about pirate treasure "
             "maps, buried gold and a parrot on the captain's shoulder.",
     "metadata": {"year": 1720}},
    {"id": "tides", "title": "Tides", "text": "The moon's gravity raises two tidal bulges, so "
     "most coasts see two high tides a day.", "metadata": {"year": 1990}},
]
QUERIES = {
    "lava and eruptions from a mountain": "volcano.txt",
    "how to make a loaf with a starter": "bread.md",
    "moving a spacecraft to a higher orbit": "orbit.rst",
    "pirate treasure map": "hostile",
}
KEYS = {"api_key": "full-secret", "read_key": "read-secret"}
FULL = {"Authorization": "Bearer full-secret"}
READ = {"Authorization": "Bearer read-secret"}


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, minilm_config, embedder) -> Path:
    """An index of TOPICS and RECORDS, built once."""
    root = tmp_path_factory.mktemp("served")
    corpus = root / "corpus"
    corpus.mkdir()
    for name, text in TOPICS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Embedder, "load", lambda *a, **k: embedder)
        with SearchIndex.open(root / "ix", minilm_config, create=True) as ix:
            ix.add_paths([corpus])
            ix.add_records(RECORDS)
    return root


@pytest.fixture
def folder(built_index, tmp_path, monkeypatch, embedder) -> Path:
    """A copy of the built index (tests may write to it); the model is the shared one."""
    monkeypatch.setattr(Embedder, "load", lambda *a, **k: embedder)
    shutil.copytree(built_index, tmp_path / "copy")
    return tmp_path / "copy" / "ix"


@pytest.fixture
def server_config(folder, minilm_config):
    def make(**server):
        return dataclasses.replace(minilm_config, index=str(folder), server=ServerConfig(**server))
    return make


@pytest.fixture
def app_client(server_config):
    """``app_client(writable=True, ...)``: a started TestClient whose model is loaded."""
    opened = []

    def make(**server) -> TestClient:
        client = TestClient(create_app(config=server_config(**server)))
        client.__enter__()
        opened.append(client)
        _wait_ready(client.get)
        return client
    yield make
    for client in opened:
        client.__exit__(None, None, None)


def _wait_ready(get) -> None:
    deadline = time.monotonic() + 60
    while get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the server never got ready"
        time.sleep(0.05)


def count(client: TestClient, headers=None) -> int:
    return client.get("/stats", headers=headers or {}).json()["documents"]


def names(hits) -> list[str]:
    return [os.path.basename(h["path"]) if h["path"] else h["key"] for h in hits]


# -- status and search ------------------------------------------------------------------------

def test_health_and_readiness(app_client):
    client = app_client()
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_post_search_ranks_the_expected_document_first(app_client, mode):
    client = app_client()
    for query, expected in QUERIES.items():
        answer = client.post("/search", json={"query": query, "k": 3, "mode": mode}).json()
        assert names(answer["hits"])[0] == expected, query
        assert [h["rank"] for h in answer["hits"]] == [1, 2, 3]
        assert answer["mode"] == mode and answer["query"] == query
        assert answer["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_search_answer_is_what_query_json_prints(app_client, folder):
    client = app_client()
    served = client.post("/search", json={"query": "sourdough starter", "k": 4}).json()
    result = CliRunner().invoke(main, ["query", "sourdough starter", "-k", "4", "--json",
                                       "--index", str(folder)])
    assert result.exit_code == 0, result.output
    assert served == json.loads(result.output)


def test_get_search_with_filters(app_client):
    client = app_client()
    answer = client.get("/search", params={"q": "bread", "k": 5, "mode": "keyword"}).json()
    assert names(answer["hits"]) == ["bread.md"] and answer["mode"] == "keyword"
    typed = client.get("/search", params=[("q", "what happens"), ("type", "record")]).json()
    assert set(names(typed["hits"])) == {"hostile", "tides"}
    old = client.get("/search", params={"q": "history", "where": "year<1800"}).json()
    assert names(old["hits"]) == ["hostile"]


def test_post_search_filters_and_chunks(app_client):
    client = app_client()
    answer = client.post("/search", json={"query": "history", "filters": {"where": ["year>=1900"],
                                                                            "type": "record"}}).json()
    assert names(answer["hits"]) == ["tides"]
    passages = client.post("/search", json={"query": "gravity", "chunks": True, "distinct": True,
                                             "k": 2}).json()["hits"]
    assert len(passages) == 2 and all(p["passage"]["text"] for p in passages)


def test_stats_are_what_info_json_prints(app_client, folder):
    client = app_client()
    stats = client.get("/stats").json()
    result = CliRunner().invoke(main, ["info", "--json", "--index", str(folder)])
    assert stats == json.loads(result.output)
    assert stats["documents"] == len(TOPICS) + len(RECORDS)


def test_document_text_around_a_passage(app_client):
    client = app_client()
    hit = client.post("/search", json={"query": "pirate treasure", "k": 1}).json()["hits"][0]
    start, end = hit["passage"]["char_start"], hit["passage"]["char_end"]
    doc = client.get(f"/documents/{hit['doc_id']}",
                     params={"start": start, "end": end, "context": 5}).json()
    assert doc["key"] == "hostile" and doc["title"].startswith("<img")
    assert doc["offset"] == max(0, start - 5)
    assert RECORDS[0]["text"][doc["offset"]:doc["offset"] + len(doc["text"])] == doc["text"]
    assert doc["length"] == len(RECORDS[0]["text"])
    whole = client.get(f"/documents/{hit['doc_id']}", params={"context": 20000}).json()
    assert whole["text"] == RECORDS[0]["text"] and whole["offset"] == 0
    assert client.get(f"/documents/{hit['doc_id']}", params={"context": 100000}).status_code == 422
    assert client.get("/documents/hostile").status_code == 422   # ids are numbers
    missing = client.get("/documents/987654")
    assert missing.status_code == 404 and "987654" in missing.json()["error"]


# -- writes -----------------------------------------------------------------------------------

def test_writes_are_off_by_default(app_client):
    client = app_client()
    before = count(client)
    refused = client.post("/documents", json={"records": [{"id": "x", "text": "new text"}]})
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]
    assert client.delete("/documents/tides").status_code == 403
    assert count(client) == before


def test_add_search_and_remove_records(app_client):
    client = app_client(writable=True)
    before = count(client)
    report = client.post("/documents", json={"records": [
        {"id": "kite", "title": "Kites", "text": "A kite flies when wind lifts its sail against "
         "the pull of the string.", "metadata": {"year": 2001}}]}).json()
    assert (report["added"], report["updated"], report["embedded"]) == (1, 0, 1)
    assert count(client) == before + 1
    hits = client.post("/search", json={"query": "flying a kite in the wind", "k": 1}).json()["hits"]
    assert names(hits) == ["kite"] and hits[0]["metadata"] == {"year": 2001}
    assert client.delete("/documents/kite").json() == {"removed": 1}
    assert count(client) == before
    missing = client.delete("/documents/kite")
    assert missing.status_code == 404 and "kite" in missing.json()["error"]


def test_index_paths_only_under_allow_paths(app_client, tmp_path):
    allowed = tmp_path / "allowed"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "sub" / "glacier.txt").write_text("Glaciers carve valleys as ice grinds slowly downhill.")
    client = app_client(writable=True, allow_paths=str(allowed))
    before = count(client)
    report = client.post("/index", json={"paths": ["sub"]}).json()
    assert report["added"] == 1 and count(client) == before + 1
    assert names(client.get("/search", params={"q": "ice carving valleys", "k": 1}).json()["hits"]) \
        == ["glacier.txt"]


def test_index_paths_is_off_without_allow_paths(app_client, tmp_path):
    client = app_client(writable=True)
    refused = client.post("/index", json={"paths": [str(tmp_path)]})
    assert refused.status_code == 403 and "--allow-paths" in refused.json()["error"]


def test_a_write_while_another_process_writes_gets_409_with_its_pid(app_client, folder):
    client = app_client(writable=True)
    before = count(client)
    with WriteLock(folder):   # another open file description: flock refuses the server's
        refused = client.post("/documents", json={"records": [{"id": "x", "text": "some text"}]})
    assert refused.status_code == 409
    assert refused.json()["holder"] == os.getpid() and str(os.getpid()) in refused.json()["error"]
    assert count(client) == before


def test_write_wait_waits_for_the_other_writer(app_client, folder):
    client = app_client(writable=True, write_wait=20.0)
    lock = WriteLock(folder).acquire()
    threading.Timer(0.5, lock.release).start()
    done = client.post("/documents", json={"records": [{"id": "x", "text": "some text"}]})
    assert done.status_code == 200 and done.json()["added"] == 1


# -- auth -------------------------------------------------------------------------------------

def test_auth_model(app_client):
    client = app_client(writable=True, **KEYS)
    record = {"records": [{"id": "x", "text": "some text"}]}
    assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200
    missing = client.post("/search", json={"query": "lava"})
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]
    assert missing.headers["www-authenticate"] == "Bearer"
    assert client.get("/stats", headers={"Authorization": "Basic full-secret"}).status_code == 401
    assert client.post("/search", json={"query": "lava"}, headers=READ).status_code == 200
    assert client.get("/stats", headers=FULL).status_code == 200
    read_write = client.post("/documents", json=record, headers=READ)
    assert read_write.status_code == 403 and "read key" in read_write.json()["error"]
    assert client.delete("/documents/tides", headers=READ).status_code == 403
    assert client.post("/documents", json=record, headers=FULL).json()["added"] == 1


# -- hostile requests: each a 4xx with a message, and nothing changes --------------------------

HOSTILE = {
    "bad json": ("POST", "/documents",
        {"content": b'{"records": [', "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
    "bad json search": ("POST", "/search",
        {"content": b"query=lava", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
    "wrong type k": ("POST", "/search", {"json": {"query": "lava", "k": "5"}}, 422, "k:"),
    "wrong type flag": ("POST", "/search", {"json": {"query": "lava", "chunks": "yes"}}, 422, "chunks:"),
    "wrong type query": ("POST", "/search", {"json": {"query": ["lava"]}}, 422, "query:"),
    "wrong type record": ("POST", "/documents", {"json": {"records": [{"id": 7, "text": "x"}]}}, 422, "records.0.id"),
    "records not a list": ("POST", "/documents", {"json": {"records": "x"}}, 422, "records"),
    "empty record text": ("POST", "/documents",
        {"json": {"records": [{"id": "e", "text": " "}]}}, 400, "text is empty"),
    "no records": ("POST", "/documents", {"json": {"records": []}}, 422, "records"),
    "unknown field": ("POST", "/search", {"json": {"query": "lava", "limit": 5}}, 422, "limit: unknown field"),
    "unknown record field": ("POST", "/documents",
        {"json": {"records": [{"id": "u", "text": "x", "body": 1}]}}, 422, "unknown field"),
    "unknown mode": ("POST", "/search", {"json": {"query": "lava", "mode": "magic"}}, 422, "mode"),
    "empty query": ("POST", "/search", {"json": {"query": "   "}}, 400, "query is empty"),
    "100 KB query": ("POST", "/search", {"json": {"query": "lava " * 20_000}}, 400, "server.max_query_chars"),
    "long GET query": ("GET", "/search", {"params": {"q": "x" * 3000}}, 400, "server.max_query_chars"),
    "k over the cap": ("POST", "/search", {"json": {"query": "lava", "k": 10_000}}, 400, "server.max_k"),
    "k zero": ("GET", "/search", {"params": {"q": "lava", "k": 0}}, 422, "k:"),
    "bad filter": ("POST", "/search", {"json": {"query": "lava", "filters": {"where": ["year>>1900"]}}}, 400, "filter"),
    "bad date": ("GET", "/search", {"params": {"q": "lava", "since": "yesterday"}}, 400, "since"),
    "bad type filter": ("POST", "/search", {"json": {"query": "lava", "filters": {"type": "exe"}}}, 400, "type"),
    "huge body": ("POST", "/documents",
        {"json": {"records": [{"id": "big", "text": "word " * 600_000}]}}, 413, "max_body_mb"),
    "lying content-length": ("POST", "/search",
        {"content": b"{}", "headers": {"Content-Length": "99999999999"}}, 413, "max_body_mb"),
    "traversal": ("POST", "/index", {"json": {"paths": ["../../etc"]}}, 403, "outside"),
    "absolute outside": ("POST", "/index", {"json": {"paths": ["/etc"]}}, 403, "outside"),
    "nul in path": ("POST", "/index", {"json": {"paths": ["a\x00b"]}}, 400, "NUL"),
    "wrong key": ("POST", "/documents",
        {"json": {"records": [{"id": "w", "text": "x"}]}, "headers": {"Authorization": "Bearer guess"}},
        401, "wrong API key"),
    "unknown endpoint": ("GET", "/admin", {}, 404, "no such endpoint"),
    "wrong method": ("PUT", "/search", {}, 405, "not allowed"),
    "delete nothing": ("DELETE", "/documents/%2Fetc%2Fpasswd", {}, 404, "no document"),
    "end before start": ("GET", "/documents/1", {"params": {"start": 9, "end": 2}}, 400, "before start"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_request_gets_a_4xx_with_a_message_and_changes_nothing(app_client, tmp_path, name):
    method, path, options, status, message = HOSTILE[name]
    (tmp_path / "allowed").mkdir()
    client = app_client(writable=True, allow_paths=str(tmp_path / "allowed"), max_body_mb=1.0,
                        **KEYS)
    before = client.get("/stats", headers=FULL).json()
    options = dict(options)
    headers = {**FULL, **options.pop("headers", {})}
    answer = client.request(method, path, headers=headers, **options)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    after = client.get("/stats", headers=FULL).json()
    assert (after["documents"], after["generation"]) == (before["documents"], before["generation"])


def test_a_streamed_body_over_the_limit_is_refused(app_client):
    client = app_client(writable=True, max_body_mb=0.001)

    def chunks():
        yield b'{"records": [{"id": "s", "text": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}]}'
    refused = client.post("/documents", content=chunks(), headers={"Content-Type": "application/json"})
    assert refused.status_code == 413 and "max_body_mb" in refused.json()["error"]


def test_a_symlink_out_of_the_allowed_folder_is_refused(app_client, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "out").symlink_to(tmp_path)
    client = app_client(writable=True, allow_paths=str(allowed))
    refused = client.post("/index", json={"paths": ["out"]})
    assert refused.status_code == 403 and "outside" in refused.json()["error"]


# -- the page and browser safety --------------------------------------------------------------

def test_the_page_and_its_files_are_served_with_a_strict_policy(app_client):
    client = app_client()
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    everything = page.text + client.get("/static/app.js").text + client.get("/static/style.css").text
    assert "http://" not in everything and "https://" not in everything   # works offline
    assert "innerHTML" not in client.get("/static/app.js").text
    assert client.get("/openapi.json").json()["info"]["title"] == "searchkit"


def test_cors_is_off_unless_configured(app_client):
    origin = {"Origin": "https://elsewhere.example"}
    plain = app_client().get("/healthz", headers=origin)
    assert "access-control-allow-origin" not in plain.headers
    allowed = app_client(cors_origins=("https://elsewhere.example",)).get("/healthz", headers=origin)
    assert allowed.headers["access-control-allow-origin"] == "https://elsewhere.example"


def test_server_settings_come_from_the_config_tree(monkeypatch):
    monkeypatch.setenv("SEARCHKIT_SERVER_API_KEY", "from-env")
    monkeypatch.setenv("SEARCHKIT_SERVER_CORS_ORIGINS", "https://a.example,https://b.example")
    config = searchkit.load_config(overrides={"server.port": "9000", "server.writable": "true"},
                                   discover=False)
    assert config.server.api_key == "from-env" and config.server.port == 9000
    assert config.server.writable is True
    assert config.server.cors_origins == ("https://a.example", "https://b.example")
    with pytest.raises(searchkit.ConfigError, match="server.port"):
        searchkit.load_config(overrides={"server.port": "70000"}, discover=False)


# -- a real server: the Python client and `query --server` ------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live(server_config):
    """A uvicorn server on 127.0.0.1 in a thread; yields its URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(config=server_config(writable=True, **KEYS)), host="127.0.0.1", port=port,
        log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    _wait_served(url, 60, 0.05, lambda: thread.is_alive() or "the server did not start")
    yield url
    server.should_exit = True
    thread.join(30)


def test_client_returns_the_same_hits_as_the_api(live, folder):
    with searchkit.Client(live, api_key="read-secret") as client:
        remote = client.search("lava eruption", k=3, mode="hybrid", filters={"type": ["txt", "md"]})
        stats = client.stats()
    with SearchIndex.open(folder) as ix:
        local = ix.search("lava eruption", k=3, mode="hybrid", filters={"type": ["txt", "md"]})
    assert [h.as_dict() for h in remote] == [h.as_dict() for h in local]
    assert isinstance(remote[0], searchkit.Hit) and remote[0].passage.text
    assert stats["documents"] == len(TOPICS) + len(RECORDS)


def test_client_writes_and_errors(live):
    with searchkit.Client(live, api_key="full-secret") as client:
        report = client.add_records([("comet", "A comet's tail points away from the sun.", {"year": 1986})])
        assert report["added"] == 1
        assert [h.key for h in client.search("comet tail", k=1)] == ["comet"]
        assert client.remove(["comet", "never-there"]) == 1
        with pytest.raises(searchkit.FilterError, match="year"):
            client.search("lava", filters={"where": "year>>1"})
        with pytest.raises(searchkit.InputError, match="max_k"):
            client.search("lava", k=1000)
    with searchkit.Client(live, api_key="read-secret") as reader:
        with pytest.raises(searchkit.SearchkitError, match="read key cannot write"):
            reader.add_records([("x", "text")])
    with pytest.raises(searchkit.SearchkitError, match="cannot reach"):
        searchkit.Client(f"http://127.0.0.1:{_free_port()}").stats()


def test_query_server_prints_what_a_local_query_prints(live, folder):
    runner = CliRunner()
    for extra in ([], ["--json"]):
        args = ["query", "starter dough", "-k", "3", "--mode", "dense", *extra]
        remote = runner.invoke(main, args, env={"SEARCHKIT_SERVER": live, "SEARCHKIT_API_KEY": "read-secret"})
        local = runner.invoke(main, [*args, "--index", str(folder)], env={"SEARCHKIT_SERVER": None})
        assert remote.exit_code == 0 and local.exit_code == 0, remote.output + local.output
        assert remote.output == local.output
    refused = runner.invoke(main, ["query", "x", "--server", live, "--index", str(folder)])
    assert refused.exit_code == 2 and "--index" in refused.output
    denied = runner.invoke(main, ["query", "x", "--server", live])
    assert denied.exit_code == 1 and "needs an API key" in denied.output


def test_client_and_query_server_load_neither_model_nor_storage(live):
    heavy = ("torch", "sentence_transformers", "transformers", "numpy", "faiss", "sqlite_utils",
             "pandas", "httpx", "fastapi")
    script = (
        "import sys\n"
        "import searchkit\n"
        f"hits = searchkit.Client({live!r}, api_key='read-secret').search('lava', k=1)\n"
        "assert hits[0].path.endswith('volcano.txt'), hits\n"
        "sys.argv = ['searchkit', 'query', 'lava', '--json']\n"
        "from searchkit.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "SEARCHKIT_SERVER": live,
                                         "SEARCHKIT_API_KEY": "read-secret"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["hits"][0]["path"].endswith("volcano.txt")
    assert done.stderr.strip() == "[]"


def test_serve_command_runs_until_sigterm(folder):
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "searchkit", "serve", "--index", str(folder), "--port", str(port),
         "--set", "model.name=sentence-transformers/all-MiniLM-L6-v2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_served(url, 120, 0.2, lambda: process.poll() is None or process.stdout.read())
        hits = httpx.get(url + "/search", params={"q": "sicilian defence", "k": 1}).json()["hits"]
        assert hits[0]["path"].endswith("chess.html")
        assert httpx.post(url + "/documents", json={"records": []}).status_code == 403  # read-only
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert process.wait(30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
    log = process.stdout.read()
    assert "Uvicorn running on http://127.0.0.1" in log
    assert "Application shutdown complete" in log   # the lifespan ran: the index was closed


def test_serve_refuses_a_folder_that_is_not_an_index_in_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("not an index")
    result = CliRunner().invoke(main, ["serve", "--index", str(tmp_path)])
    assert result.exit_code == 1 and "not a searchkit index" in result.output
    bad = CliRunner().invoke(main, ["serve", "--index", str(tmp_path), "--port", "99999"])
    assert bad.exit_code == 1 and "server.port" in bad.output


def test_eval_help_lists_every_mode():
    from searchkit.evaluation.runner import EVAL_MODES
    text = CliRunner().invoke(main, ["eval", "--help"], terminal_width=400).output
    assert all(mode in text for mode in EVAL_MODES)


def test_client_hits_keep_the_passage_page():
    from searchkit.client import hits_of
    answer = {"hits": [{"rank": 1, "score": 0.5, "key": "k", "title": "t", "path": "a.pdf",
                        "snippet": "s", "doc_id": 3, "metadata": {}, "scores": {},
                        "passage": {"text": "x", "char_start": 0, "char_end": 1, "score": 0.5,
                                    "page": 7}}]}
    assert hits_of(answer)[0].passage.page == 7


def _wait_served(url: str, seconds: float, pause: float, alive) -> None:
    """Poll ``url``/readyz until it answers 200; ``alive()`` returns True while the server can
    still come up, else the failure message."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        state = alive()
        assert state is True and time.monotonic() < deadline, state
        time.sleep(pause)
