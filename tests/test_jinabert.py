"""searchkit's native JinaBERT (jina-embeddings-v2) on tiny random checkpoints in the published layout."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from searchkit.embedding.jinabert import (
    JinaBertConfig,
    JinaBertModel,
    alibi_slopes,
    build_sentence_transformer,
    is_jina_v2_folder,
    load_jina_model,
    looks_like_jinabert,
)
from searchkit.errors import ModelError, ModelNotFoundError, UnsupportedModelError

try:
    from tests.jina_fixtures import tiny_jina_state_dict, write_tiny_jina_checkpoint
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from jina_fixtures import tiny_jina_state_dict, write_tiny_jina_checkpoint

SLOPES_12 = [2.0**-e for e in (1, 2, 3, 4, 5, 6, 7, 8, 0.5, 1.5, 2.5, 3.5)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_jina_checkpoint(tmp_path_factory.mktemp("jina") / "tiny")


@pytest.fixture(scope="module")
def model(tiny):
    return load_jina_model(tiny)


@pytest.fixture(scope="module")
def st(tiny):
    return build_sentence_transformer(tiny)


# -- a plain eager JinaBERT, written from the architecture description, straight from the weights --


def eager_jinabert(sd, cfg: JinaBertConfig, ids, mask, slopes, token_type_ids=None):
    B, L = ids.shape
    D, H, I, eps = cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.layer_norm_eps
    d = D // H
    tt = torch.zeros_like(ids) if token_type_ids is None else token_type_ids
    x = F.embedding(ids, sd["embeddings.word_embeddings.weight"]) + F.embedding(tt, sd["embeddings.token_type_embeddings.weight"])
    x = F.layer_norm(x, (D,), sd["embeddings.LayerNorm.weight"], sd["embeddings.LayerNorm.bias"], eps)
    pos = torch.arange(L)
    alibi = -torch.tensor(slopes)[:, None, None] * (pos[:, None] - pos[None, :]).abs()  # [H,L,L]
    pad = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min  # [B,1,1,L]
    for n in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{n}."

        def lin(t, name, bias=True, p=p):
            return F.linear(t, sd[p + name + ".weight"], sd[p + name + ".bias"] if bias else None)

        q, k, v = (lin(x, f"attention.self.{m}").view(B, L, H, d).transpose(1, 2) for m in ("query", "key", "value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + alibi + pad  # [B,H,L,L]
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, L, D)
        x = F.layer_norm(lin(ctx, "attention.output.dense") + x, (D,),
                         sd[p + "attention.output.LayerNorm.weight"], sd[p + "attention.output.LayerNorm.bias"], eps)
        g = lin(x, "mlp.gated_layers", bias=False)
        h = 0.5 * g[..., :I] * (1.0 + torch.erf(g[..., :I] / math.sqrt(2.0))) * g[..., I:]
        x = F.layer_norm(lin(h, "mlp.wo") + x, (D,), sd[p + "mlp.layernorm.weight"], sd[p + "mlp.layernorm.bias"], eps)
    return x


def mean_pool(h, mask):
    m = mask[..., None].to(h.dtype)
    return (h * m).sum(1) / m.sum(1)


def random_batch(lengths, vocab, seed=0, left=False):
    g = torch.Generator().manual_seed(seed)
    L = max(lengths)
    ids = torch.zeros(len(lengths), L, dtype=torch.long)
    mask = torch.zeros(len(lengths), L, dtype=torch.long)
    for b, n in enumerate(lengths):
        sl = slice(L - n, L) if left else slice(0, n)
        ids[b, sl] = torch.randint(5, vocab, (n,), generator=g)
        mask[b, sl] = 1
    return ids, mask


# -- loading -----------------------------------------------------------------------------------------


def test_loads_all_published_keys(tiny, model):
    sd = load_file(str(tiny / "model.safetensors"))
    own = model.state_dict()
    assert set(own) == {k for k in sd if not k.startswith("pooler.")}
    for k, t in own.items():
        assert torch.equal(t, sd[k]), k
    assert model.config == JinaBertConfig(vocab_size=model.config.vocab_size, hidden_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, intermediate_size=128)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def _rewrite(folder, tmp_path, edit):
    import shutil

    out = tmp_path / "edited"
    shutil.copytree(folder, out)
    sd = load_file(str(out / "model.safetensors"))
    edit(sd)
    save_file(sd, str(out / "model.safetensors"))
    return out


def test_missing_weight_is_named(tiny, tmp_path):
    key = "encoder.layer.1.mlp.wo.bias"
    folder = _rewrite(tiny, tmp_path, lambda sd: sd.pop(key))
    with pytest.raises(ModelError, match="missing weights: " + key.replace(".", r"\.")):
        load_jina_model(folder)


def test_unexpected_weight_is_named(tiny, tmp_path):
    key = "encoder.layer.0.attention.self.extra.weight"
    folder = _rewrite(tiny, tmp_path, lambda sd: sd.__setitem__(key, torch.zeros(3)))
    with pytest.raises(ModelError, match="unexpected weights: " + key.replace(".", r"\.")):
        load_jina_model(folder)


def test_wrong_shape_is_named(tiny, tmp_path):
    key = "encoder.layer.0.mlp.wo.weight"
    folder = _rewrite(tiny, tmp_path, lambda sd: sd.__setitem__(key, torch.zeros(64, 64)))
    with pytest.raises(ModelError, match=key.replace(".", r"\.")):
        load_jina_model(folder)


def test_bert_prefix_and_pytorch_bin_are_accepted(tiny, model, tmp_path):
    folder = write_tiny_jina_checkpoint(tmp_path / "bin", weights_format="bin")
    sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
    torch.save({"bert." + k: v for k, v in sd.items()}, folder / "pytorch_model.bin")
    loaded = load_jina_model(folder)
    for k, t in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], t), k


def test_missing_folder_or_weights_names_the_path(tiny, tmp_path):
    with pytest.raises(ModelNotFoundError, match=str(tmp_path / "nowhere")):
        load_jina_model(tmp_path / "nowhere")
    folder = write_tiny_jina_checkpoint(tmp_path / "noweights")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match=str(folder)):
        load_jina_model(folder)
    assert not is_jina_v2_folder(folder)


def test_folder_detection(tiny, tmp_path):
    assert is_jina_v2_folder(tiny) and is_jina_v2_folder(str(tiny)) and looks_like_jinabert(tiny)
    assert not is_jina_v2_folder(tmp_path / "nowhere")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "position_embedding_type": "absolute"}))
    assert not is_jina_v2_folder(bert) and not looks_like_jinabert(bert)
    with pytest.raises(UnsupportedModelError, match="alibi"):
        load_jina_model(bert)


# -- the base-code variant and other relatives are refused ---------------------------------------------


def test_code_variant_is_refused(tmp_path):
    folder = write_tiny_jina_checkpoint(tmp_path / "code", variant="code")
    assert not is_jina_v2_folder(folder)
    assert looks_like_jinabert(folder)  # so the embedder routes it here, to be refused, not to plain BERT
    for load in (load_jina_model, build_sentence_transformer):
        with pytest.raises(UnsupportedModelError, match=str(folder)) as err:
            load(folder)
        assert "code" in str(err.value)


def test_code_weights_refused_even_with_a_clean_config(tmp_path):
    folder = write_tiny_jina_checkpoint(tmp_path / "code2", variant="code")
    config = json.loads((folder / "config.json").read_text())
    for k in ("_name_or_path", "auto_map", "attn_implementation"):
        config.pop(k)
    (folder / "config.json").write_text(json.dumps(config))
    assert not is_jina_v2_folder(folder)
    with pytest.raises(UnsupportedModelError, match="layer_norm_q"):
        load_jina_model(folder)


@pytest.mark.parametrize("field,value", [("feed_forward_type", "reglu"), ("with_qk_norm", True)])
def test_other_variants_refused_by_config(tmp_path, field, value):
    folder = write_tiny_jina_checkpoint(tmp_path / "variant")
    config = json.loads((folder / "config.json").read_text())
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    assert not is_jina_v2_folder(folder)
    with pytest.raises(UnsupportedModelError, match=field):
        load_jina_model(folder)


# -- ALiBi ---------------------------------------------------------------------------------------------


def test_alibi_slopes():
    assert alibi_slopes(4).tolist() == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]
    assert alibi_slopes(8).tolist() == [2.0**-i for i in range(1, 9)]
    assert torch.allclose(alibi_slopes(12), torch.tensor(SLOPES_12), rtol=1e-6, atol=0)
    assert alibi_slopes(12).dtype == torch.float32


# -- numerics: SDPA/sliced path == eager; padding invariance ---------------------------------------------


def _check_against_eager(folder, model, lengths, block_elems=None, atol=2e-5):
    model.block_elems = block_elems
    try:
        sd = load_file(str(folder / "model.safetensors"))
        ids, mask = random_batch(lengths, model.config.vocab_size, seed=len(lengths))
        tt = torch.randint(0, 2, ids.shape, generator=torch.Generator().manual_seed(1))
        slopes = alibi_slopes(model.config.num_attention_heads).tolist()
        ref = eager_jinabert(sd, model.config, ids, mask, slopes, tt)
        got = model(ids, mask, tt)
        assert got.shape == ref.shape
        m = mask.bool()
        assert torch.allclose(got[m], ref[m], atol=atol, rtol=1e-4), (got[m] - ref[m]).abs().max()
        return got
    finally:
        model.block_elems = None


def test_sdpa_equals_eager_short(tiny, model):
    _check_against_eager(tiny, model, [37, 20, 1])


def test_sliced_equals_eager(tiny, model):
    B, H, L = 2, 4, 300
    model.block_elems = B * H * 48 * L
    assert model._block_rows(B, L, torch.device("cpu")) == 48  # 48-row blocks, the last one short
    model.block_elems = None
    assert model._block_rows(1, 2100, torch.device("cpu")) < 2100  # the default budget slices here
    _check_against_eager(tiny, model, [L, 211], block_elems=B * H * 48 * L)
    _check_against_eager(tiny, model, [2100], atol=5e-5)


@pytest.mark.parametrize("left", [False, True])
def test_padding_changes_nothing(model, left):
    lengths = [50, 13, 31, 1]
    ids, mask = random_batch(lengths, model.config.vocab_size, seed=3, left=left)
    batch = model(ids, mask)
    pooled = mean_pool(batch, mask)
    L = ids.shape[1]
    for b, n in enumerate(lengths):
        sl = slice(L - n, L) if left else slice(0, n)
        alone = model(ids[b : b + 1, sl], mask[b : b + 1, sl])
        assert torch.allclose(batch[b, sl], alone[0], atol=1e-5), (b, (batch[b, sl] - alone[0]).abs().max())
        assert torch.allclose(pooled[b], alone[0].mean(0), atol=1e-5)


def test_padding_changes_nothing_when_sliced(model):
    lengths = [260, 97]
    ids, mask = random_batch(lengths, model.config.vocab_size, seed=4)
    model.block_elems = 2 * 4 * 32 * 260
    try:
        batch = model(ids, mask)
        alone = model(ids[1:, :97], mask[1:, :97])
    finally:
        model.block_elems = None
    assert torch.allclose(batch[1, :97], alone[0], atol=1e-5)


def test_12_heads_hidden_96(tmp_path):
    folder = write_tiny_jina_checkpoint(tmp_path / "j12", hidden=96, heads=12, intermediate=192, seed=1)
    model = load_jina_model(folder)
    assert model.config.num_attention_heads == 12 and model.config.hidden_size == 96
    _check_against_eager(folder, model, [40, 17])
    assert torch.isfinite(model(torch.randint(5, 100, (1, 600)))).all()


def test_8192_tokens_run(model):
    ids = torch.randint(5, model.config.vocab_size, (1, 8192), generator=torch.Generator().manual_seed(0))
    out = model(ids, torch.ones_like(ids))
    assert out.shape == (1, 8192, 64) and torch.isfinite(out).all()
    # sliced: the cached ALiBi template is a small fraction of one [H, L, L] score matrix
    template = model._templates[next(k for k in model._templates if k[0] == 8192)]
    assert template.numel() * 4 < 4 * 8192 * 8192


def test_bfloat16(tiny, model):
    half = load_jina_model(tiny, dtype=torch.bfloat16)
    assert half.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    ids, mask = random_batch([64, 30], model.config.vocab_size, seed=5)
    a, b = mean_pool(model(ids, mask), mask), mean_pool(half(ids, mask).float(), mask)
    assert torch.isfinite(b).all() and F.cosine_similarity(a, b).min() > 0.99


# -- sentence-transformers integration -------------------------------------------------------------------


def test_sentence_transformer_encode(st, model):
    texts = ["Semantic search over long documents.", "short", "Late chunking keeps the context of every chunk. " * 5]
    emb = st.encode(texts)
    assert emb.shape == (3, 64)
    assert st.get_embedding_dimension() == 64
    enc = st.tokenizer(texts[0], return_tensors="pt")
    ref = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).mean(1)[0]
    assert torch.allclose(torch.from_numpy(emb[0]), ref, atol=1e-5)  # mean pooling, no normalisation
    for text, vec in zip(texts, emb):  # batching (padding) changes nothing
        assert torch.allclose(torch.from_numpy(st.encode([text])[0]), torch.from_numpy(vec), atol=1e-5)


def test_sentence_transformer_first_module(st):
    assert st.tokenizer.is_fast
    enc = st.tokenizer(["hello there", "search"], padding=True, return_offsets_mapping=True, return_tensors="pt")
    assert "offset_mapping" in enc
    features = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "token_type_ids": enc["token_type_ids"]}
    out = st[0](features)
    assert out["token_embeddings"].shape == (2, enc["input_ids"].shape[1], 64)
    assert out["token_embeddings"].dtype == torch.float32


def test_max_seq_length(tiny):
    st = build_sentence_transformer(tiny)
    assert st.max_seq_length == 8192
    st.max_seq_length = 16
    assert st.max_seq_length == 16
    assert st.preprocess(["word " * 100])["input_ids"].shape == (1, 16)
    assert st.encode(["word " * 100]).shape == (1, 64)


def test_saved_module_loads_again(st, tmp_path):
    st.save(str(tmp_path / "saved"))
    assert is_jina_v2_folder(tmp_path / "saved")
    again = build_sentence_transformer(tmp_path / "saved")
    texts = ["a saved model gives the same vectors", "twice"]
    assert torch.allclose(torch.from_numpy(st.encode(texts)), torch.from_numpy(again.encode(texts)))


def test_fixture_is_deterministic():
    a = tiny_jina_state_dict(32, 1, 4, 64, 100, seed=7)
    b = tiny_jina_state_dict(32, 1, 4, 64, 100, seed=7)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_model_can_be_built_from_config():
    cfg = JinaBertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
    out = JinaBertModel(cfg)(torch.randint(0, 50, (2, 9)))
    assert out.shape == (2, 9, 32)
