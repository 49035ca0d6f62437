"""Tiny random jina-embeddings-v2 (JinaBERT) checkpoints in the published layout, for tests.

CI has no real weights, so tests write a checkpoint folder that looks exactly like
``jinaai/jina-embeddings-v2-small-en`` on the hub, only tiny and random:

- ``config.json`` with every field of the published config (``position_embedding_type: "alibi"``,
  ``feed_forward_type: "geglu"``, ``emb_pooler: "mean"``, ``auto_map`` pointing at the remote code
  that searchkit never runs, ...);
- ``model.safetensors`` with the exact published key names (no ``bert.`` prefix);
- a real BERT-uncased WordPiece tokenizer built in code (``tokenizer.json``, ``vocab.txt``,
  ``tokenizer_config.json``, ``special_tokens_map.json``) whose small vocabulary holds every
  printable ASCII character, so any ASCII text (and accented Latin letters, which BERT uncased
  strips) tokenizes without ``[UNK]``.

Usage (the signature is stable; other test modules import it)::

    try:
        from tests.jina_fixtures import write_tiny_jina_checkpoint
    except ImportError:  # tests/ is no package and pytest put tests/ itself on sys.path
        from jina_fixtures import write_tiny_jina_checkpoint

    folder = write_tiny_jina_checkpoint(tmp_path / "jina")          # hidden 64, 2 layers, 4 heads
    folder = write_tiny_jina_checkpoint(tmp_path / "j12", hidden=96, heads=12)
    folder = write_tiny_jina_checkpoint(tmp_path / "code", variant="code")  # base-code layout

``variant="code"`` writes a jina-embeddings-v2-base-code-like checkpoint (q/k layer norms,
``up_gated_layer``/``down_layer`` MLP, ``_name_or_path`` of the qk-post-norm code) that searchkit
must refuse with ``UnsupportedModelError``.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from safetensors.torch import save_file

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4, [PAD] = 0 as published
_WORDS = (
    "the of and to in is was for on that with as by it at from this be are or an not have has which "
    "their its also one two three first new more can will they he she we you i his her were been "
    "search document documents text query model embedding vector long chunk late token tokens "
    "semantic index file page word words sentence paragraph section chapter data science history"
).split()
_SUFFIXES = ["##s", "##es", "##ed", "##ing", "##er", "##ly", "##tion", "##al", "##ment", "##ness"]


def tiny_vocab() -> list[str]:
    """The fixture's WordPiece vocabulary: specials, every printable lowercase ASCII character
    (alone and as a ``##`` continuation), a few suffixes and common words."""
    chars = [c for c in string.printable if c.isprintable() and not c.isspace() and not c.isupper()]
    vocab = list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars] + _SUFFIXES
    for word in _WORDS:
        if word not in vocab:
            vocab.append(word)
    return vocab


def _write_tokenizer(folder: Path, vocab: list[str]) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    ids = {tok: i for i, tok in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.save(str(folder / "tokenizer.json"))
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    special = {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    tok_config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "do_basic_tokenize": True,
        "never_split": None,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "clean_up_tokenization_spaces": True,
        "model_max_length": 2147483648,  # as published: the config, not the tokenizer, says 8192
        **special,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2), encoding="utf-8")


def _config(hidden: int, layers: int, heads: int, intermediate: int, vocab_size: int, variant: str) -> dict:
    code = "jinaai/jina-bert-v2-qk-post-norm" if variant == "code" else "jinaai/jina-bert-implementation"
    config = {
        "_name_or_path": code,
        "architectures": ["JinaBertForMaskedLM"],
        "attention_probs_dropout_prob": 0.0,
        "auto_map": {
            "AutoConfig": f"{code}--configuration_bert.JinaBertConfig",
            "AutoModel": f"{code}--modeling_bert.JinaBertModel",
            "AutoModelForMaskedLM": f"{code}--modeling_bert.JinaBertForMaskedLM",
            "AutoModelForSequenceClassification": f"{code}--modeling_bert.JinaBertForSequenceClassification",
        },
        "classifier_dropout": None,
        "emb_pooler": "mean",
        "feed_forward_type": "geglu",
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 8192,
        "model_max_length": 8192,
        "model_type": "bert",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "pad_token_id": 0,
        "position_embedding_type": "alibi",
        "torch_dtype": "float32",
        "transformers_version": "4.26.0",
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    if variant == "code":
        config["attn_implementation"] = "torch"
    return config


def tiny_jina_state_dict(
    hidden: int, layers: int, heads: int, intermediate: int, vocab_size: int, seed: int = 0, variant: str = "v2"
) -> dict[str, torch.Tensor]:
    """Random weights under the exact published key names (``variant="code"``: base-code names)."""
    del heads  # the head count does not change any weight shape
    g = torch.Generator().manual_seed(seed)
    D, I = hidden, intermediate

    def w(*shape: int, std: float = 0.05) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    def norm(prefix: str) -> dict[str, torch.Tensor]:  # LayerNorm near identity, not exactly
        return {f"{prefix}.weight": 1.0 + w(D, std=0.1), f"{prefix}.bias": w(D, std=0.1)}

    sd = {
        "embeddings.word_embeddings.weight": w(vocab_size, D, std=0.5),
        "embeddings.token_type_embeddings.weight": w(2, D, std=0.5),
        **norm("embeddings.LayerNorm"),
    }
    for n in range(layers):
        p = f"encoder.layer.{n}"
        for name in ("query", "key", "value"):
            sd[f"{p}.attention.self.{name}.weight"] = w(D, D, std=D**-0.5)
            sd[f"{p}.attention.self.{name}.bias"] = w(D)
        sd[f"{p}.attention.output.dense.weight"] = w(D, D, std=D**-0.5)
        sd[f"{p}.attention.output.dense.bias"] = w(D)
        sd.update(norm(f"{p}.attention.output.LayerNorm"))
        if variant == "code":
            sd.update(norm(f"{p}.attention.self.layer_norm_q"))
            sd.update(norm(f"{p}.attention.self.layer_norm_k"))
            sd[f"{p}.mlp.up_gated_layer.weight"] = w(2 * I, D, std=D**-0.5)
            sd[f"{p}.mlp.down_layer.weight"] = w(D, I, std=I**-0.5)
            sd[f"{p}.mlp.down_layer.bias"] = w(D)
            sd.update(norm(f"{p}.layer_norm_1"))
            sd.update(norm(f"{p}.layer_norm_2"))
        else:
            sd[f"{p}.mlp.gated_layers.weight"] = w(2 * I, D, std=D**-0.5)
            sd[f"{p}.mlp.wo.weight"] = w(D, I, std=I**-0.5)
            sd[f"{p}.mlp.wo.bias"] = w(D)
            sd.update(norm(f"{p}.mlp.layernorm"))
    sd["pooler.dense.weight"] = w(D, D)  # published files carry the (unused) BERT pooler
    sd["pooler.dense.bias"] = w(D)
    return sd


def write_tiny_jina_checkpoint(
    folder,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 128,
    seed: int = 0,
    variant: str = "v2",
    *,
    weights_format: str = "safetensors",
) -> Path:
    """Write a tiny random jina-embeddings-v2 checkpoint folder and return its path.

    Args:
        folder: where to write (created if missing).
        hidden, layers, heads, intermediate: the architecture (hidden must divide by heads).
        seed: seed of the random weights (same seed, same weights).
        variant: ``"v2"`` (small-en/base-en layout, which searchkit runs) or ``"code"``
            (base-code layout with q/k layer norms, which searchkit refuses).
        weights_format: ``"safetensors"`` (``model.safetensors``, as published) or ``"bin"``
            (``pytorch_model.bin``).

    The vocabulary comes from the tiny WordPiece tokenizer written beside the weights
    (``config.json``'s ``vocab_size`` is its size).
    """
    if variant not in ("v2", "code"):
        raise ValueError(f"variant must be 'v2' or 'code', not {variant!r}")
    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab()
    _write_tokenizer(folder, vocab)
    config = _config(hidden, layers, heads, intermediate, len(vocab), variant)
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    sd = tiny_jina_state_dict(hidden, layers, heads, intermediate, len(vocab), seed=seed, variant=variant)
    if weights_format == "safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
    elif weights_format == "bin":
        torch.save(sd, folder / "pytorch_model.bin")
    else:
        raise ValueError(f"weights_format must be 'safetensors' or 'bin', not {weights_format!r}")
    return folder
