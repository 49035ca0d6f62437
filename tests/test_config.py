import re
from pathlib import Path

import pytest
import yaml

from searchkit.config import Config, all_keys, as_dict, env_var, load_config
from searchkit.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_shipped_config_yaml_holds_exactly_the_defaults():
    shipped = yaml.safe_load((REPO / "config.yaml").read_text())
    defaults = as_dict(Config())
    defaults["ingest"]["extensions"] = list(defaults["ingest"]["extensions"])
    defaults["server"]["cors_origins"] = list(defaults["server"]["cors_origins"])
    assert shipped == defaults


def test_every_setting_is_documented_in_config_yaml():
    text = (REPO / "config.yaml").read_text()
    for key in all_keys():
        assert f"{key.split('.')[-1]}:" in text, key


def test_precedence_flag_over_env_over_file(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("search:\n  k: 3\n  rerank: late\nmodel:\n  batch_tokens: 100\n")
    env = {"SEARCHKIT_SEARCH_K": "5", "SEARCHKIT_MODEL_BATCH_TOKENS": "200"}
    config = load_config(file, overrides={"search.k": 7}, environ=env)
    assert config.search.k == 7                # flag wins
    assert config.model.batch_tokens == 200    # env beats file
    assert config.search.rerank == "late"      # file beats default
    assert config.ann.nprobe == 32             # default


def test_env_var_names():
    assert env_var("model.name") == "SEARCHKIT_MODEL_NAME"
    assert env_var("index") == "SEARCHKIT_INDEX"
    config = load_config(environ={"SEARCHKIT_INDEX": "/tmp/x", "SEARCHKIT_MODEL_WINDOW_TOKENS": "128",
                                  "SEARCHKIT_INGEST_EXTENSIONS": ".txt,.md"}, discover=False)
    assert config.index == "/tmp/x"
    assert config.model.window_tokens == 128
    assert config.ingest.extensions == (".txt", ".md")


@pytest.mark.parametrize("content, fragment", [
    ("search:\n  k: many\n", "search.k"),
    ("ann:\n  type: annoy\n", "ann.type"),
    ("search:\n  chunk_weight: 1.5\n", "search.chunk_weight"),
    ("ann:\n  auto_flat_mb_documents: 0\n", "ann.auto_flat_mb_documents"),
    ("ann:\n  auto_flat_mb_documents: lots\n", "ann.auto_flat_mb_documents"),
    ("model:\n  fallback: maybe\n", "model.fallback"),
    ("bogus: 1\n", "unknown setting 'bogus'"),
    ("- a list\n", "must hold a mapping"),
    ("search: [unclosed\n", "not valid YAML"),
])
def test_malformed_config_names_the_setting(tmp_path, content, fragment):
    file = tmp_path / "bad.yaml"
    file.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(file, environ={})
    assert fragment in str(info.value)


def test_bad_environment_value_names_the_variable_source():
    with pytest.raises(ConfigError, match=r"search\.k \(env SEARCHKIT_SEARCH_K\)"):
        load_config(environ={"SEARCHKIT_SEARCH_K": "-1"}, discover=False)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_with_settings_replaces_dotted_keys_and_validates():
    from searchkit.config import with_settings
    config = with_settings(Config(), {"chunking.mode": "naive", "model.max_windows": 1})
    assert config.chunking.mode == "naive" and config.model.max_windows == 1
    assert config.search == Config().search
    with pytest.raises(ConfigError, match="chunking.mode"):
        with_settings(Config(), {"chunking.mode": "sideways"})
    with pytest.raises(ConfigError, match="unknown setting"):
        with_settings(Config(), {"chunking.colour": 1})


@pytest.mark.parametrize("text", ["idx #2", "010", "2:30", "on", "@idx", "*x", "[a]", "null", " x "])
def test_text_settings_from_flags_and_env_are_taken_verbatim(text):
    config = load_config(overrides={"index": text}, environ={}, discover=False)
    assert config.index == text
    config = load_config(environ={"SEARCHKIT_MODEL_NAME": text}, discover=False)
    assert config.model.name == text


def test_empty_text_setting_is_an_error_naming_the_source():
    with pytest.raises(ConfigError, match=r"index \(flag\)"):
        load_config(overrides={"index": ""}, environ={}, discover=False)
    with pytest.raises(ConfigError, match=r"model\.name \(env SEARCHKIT_MODEL_NAME\)"):
        load_config(environ={"SEARCHKIT_MODEL_NAME": ""}, discover=False)


def test_numbers_from_flags_and_env_are_plain_decimal():
    env = {"SEARCHKIT_ANN_NPROBE": "010", "SEARCHKIT_SEARCH_K": " 7 ",
           "SEARCHKIT_MODEL_NETWORK_TIMEOUT": "1e1", "SEARCHKIT_MODEL_FALLBACK": "off",
           "SEARCHKIT_MODEL_WINDOW_TOKENS": "null", "SEARCHKIT_MODEL_MAX_WINDOWS": ""}
    config = load_config(overrides={"search.rerank_depth": "1_000"}, environ=env, discover=False)
    assert config.ann.nprobe == 10 and config.search.k == 7
    assert config.model.network_timeout == 10.0 and config.model.fallback is False
    assert config.model.window_tokens is None and config.model.max_windows is None
    assert config.search.rerank_depth == 1000


@pytest.mark.parametrize("value", ["2:30", "0x10", "[unclosed", "@x", "*x", "5.0", "true"])
def test_malformed_numbers_from_flags_and_env_name_setting_and_source(value):
    with pytest.raises(ConfigError, match=r"search\.k \(flag\): expected int"):
        load_config(overrides={"search.k": value}, environ={}, discover=False)
    with pytest.raises(ConfigError, match=r"search\.k \(env SEARCHKIT_SEARCH_K\): expected int"):
        load_config(environ={"SEARCHKIT_SEARCH_K": value}, discover=False)


@pytest.mark.parametrize("value", ["[unclosed", "@x", "{a: 1}", "1"])
def test_malformed_booleans_and_lists_name_setting_and_source(value):
    with pytest.raises(ConfigError, match=r"model\.fallback \(env SEARCHKIT_MODEL_FALLBACK\)"):
        load_config(environ={"SEARCHKIT_MODEL_FALLBACK": value}, discover=False)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_floats_are_refused(value, tmp_path):
    with pytest.raises(ConfigError, match=r"model\.network_timeout \(flag\)"):
        load_config(overrides={"model.network_timeout": value}, environ={}, discover=False)
    file = tmp_path / "c.yaml"
    file.write_text("model:\n  network_timeout: .nan\n")
    with pytest.raises(ConfigError, match=rf"model\.network_timeout \({file}\)"):
        load_config(file, environ={})


HUGO = "baseURL: https://example.org/\ntitle: My site\nparams:\n  author: me\n"


def test_another_tools_implicit_config_yaml_is_ignored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(HUGO)
    assert load_config(environ={}) == Config()
    (tmp_path / "config.yaml").write_text("- a list of another tool\n")
    assert load_config(environ={}) == Config()


def test_implicit_config_yaml_mixing_known_and_unknown_keys_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(HUGO + "search:\n  k: 3\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'baseURL' \(config\.yaml\)"):
        load_config(environ={})


def test_explicit_config_file_of_another_tool_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(HUGO)
    with pytest.raises(ConfigError, match=r"unknown setting 'baseURL' \(config\.yaml\)"):
        load_config("config.yaml", environ={})
    with pytest.raises(ConfigError, match=r"unknown setting 'baseURL' \(config\.yaml\)"):
        load_config(environ={"SEARCHKIT_CONFIG": "config.yaml"})


def test_extensions_without_a_dot_are_read_as_extensions(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("ingest:\n  extensions: [txt, .md]\n")
    assert load_config(file, environ={}).ingest.extensions == (".txt", ".md")
    flagged = load_config(overrides={"ingest.extensions": "rst,html"}, environ={}, discover=False)
    assert flagged.ingest.extensions == (".rst", ".html")


def test_set_values_are_checked_even_when_a_flag_overrides_them():
    # The same garbage is an error from --set as from the environment, whatever -k says.
    with pytest.raises(ConfigError, match=r"search\.k \(--set\): expected int, got 'abc'"):
        load_config(overrides={"search.k": 1}, settings={"search.k": "abc"}, environ={},
                    discover=False)
    with pytest.raises(ConfigError, match=r"search\.k \(env SEARCHKIT_SEARCH_K\)"):
        load_config(overrides={"search.k": 1}, environ={"SEARCHKIT_SEARCH_K": "abc"}, discover=False)
    config = load_config(overrides={"search.k": 1}, settings={"search.k": "5", "search.mode": "dense"},
                         environ={"SEARCHKIT_SEARCH_K": "3"}, discover=False)
    assert config.search.k == 1 and config.search.mode == "dense"   # flag > --set > env
    assert load_config(settings={"search.k": "5"}, environ={"SEARCHKIT_SEARCH_K": "3"},
                       discover=False).search.k == 5


@pytest.mark.parametrize("content, message", [
    ("search: 5\n", r"search \(.*\): expected a section of settings \(k, mode, .*\), got 5"),
    ("ingest: [.txt]\n", r"ingest \(.*\): expected a section of settings \(extensions, "),
    ("index:\n  folder: x\n", r"index \(.*\): expected str, got \{'folder': 'x'\}"),
    ("model:\n  name: {a: 1}\n", r"model\.name \(.*\): expected str"),
])
def test_a_value_of_the_wrong_shape_says_what_is_expected(tmp_path, content, message):
    file = tmp_path / "c.yaml"
    file.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(file, environ={})
    assert "unknown setting" not in str(info.value)


def test_a_section_with_every_line_commented_out_is_no_settings(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("search:\n#  k: 3\nmodel:\n  batch_tokens: 100\n")
    config = load_config(file, environ={})
    assert config.search == Config().search and config.model.batch_tokens == 100


@pytest.mark.parametrize("value", ["", " ", ",", "[]", "null"])
def test_an_empty_list_setting_says_a_list_is_expected(value):
    got = "an empty list" if value == "[]" else re.escape(repr(value))
    expected = r"ingest\.extensions \(--set\): expected a list of (one or more )?words.*\.txt,\.md.*, got "
    with pytest.raises(ConfigError, match=expected + got):
        load_config(settings={"ingest.extensions": value}, environ={}, discover=False)
