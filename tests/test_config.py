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
    with pytest.raises(ConfigError, match=r"search\.k \(environment\)"):
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
