"""searchkit's own JinaBERT, the encoder of jina-embeddings-v2 (small-en, base-en).

The published checkpoints run in transformers only through ``trust_remote_code``; this module runs
them natively from a local folder (``model.safetensors`` or ``pytorch_model.bin``) and never
executes anything that ships with a model. Post-LN BERT without position embeddings:

    h = LayerNorm(word_emb[ids] + type_emb[tt])
    per layer:  a = softmax(Q Kᵀ/√d_head + alibi + key_pad) V        alibi[h,i,j] = -slope_h·|i-j|
                h = LayerNorm(dense(a) + h)
                g, u = split(gated_layers(h))                         Linear D → 2I, no bias
                h = LayerNorm(wo(gelu(g) · u) + h)                    exact erf GELU, first half

Attention runs through ``scaled_dot_product_attention`` with the ALiBi bias as ``attn_mask``. Long
inputs never materialise an [H, L, L] bias: queries go in blocks whose mask is a view into one
template built per length, and the feed-forward goes in token chunks, so a forward at 8192 tokens
adds a small fraction of what an eager implementation's fp32 [H, L, L] scores take.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError, ModelNotFoundError, UnsupportedModelError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Not encoder weights: the unused BERT pooler; index buffers older transformers saved with weights.
_IGNORED_PREFIXES = ("pooler.",)
_IGNORED_KEYS = ("embeddings.position_ids", "embeddings.token_type_ids")
# jina-embeddings-v2-base-code (code: jinaai/jina-bert-v2-qk-post-norm) has q/k layer norms, extra
# per-layer norms and another GLU layout: this code would give it wrong vectors, so it is refused.
_CODE_VARIANT_KEYS = ("layer_norm_q", "layer_norm_k", "up_gated_layer", "down_layer", "layer_norm_1")
_CODE_VARIANT_FLAGS = ("with_qk_norm", "qk_norm", "use_qk_norm", "qk_post_norm")
_CODE_VARIANT = "the jina-embeddings-v2-base-code variant (q/k layer norms, other GLU layout)"


def _refusal_reason(config: dict[str, Any]) -> str | None:
    """Why a config.json describes something this module must not run (None: it can run it)."""
    pos, ff = config.get("position_embedding_type"), config.get("feed_forward_type")
    if pos != "alibi":
        return f"position_embedding_type is {pos!r}, not 'alibi': not a jina-embeddings-v2 (JinaBERT) model"
    if ff != "geglu":
        return f"feed_forward_type is {ff!r}; only jina-embeddings-v2's 'geglu' is supported"
    for flag in _CODE_VARIANT_FLAGS:
        if config.get(flag):
            return f"config.json sets {flag!r}: {_CODE_VARIANT}"
    names = [config.get("_name_or_path")] + list((config.get("auto_map") or {}).values())
    if any(isinstance(n, str) and "qk-post-norm" in n for n in names):
        return f"it is {_CODE_VARIANT}"
    return None


def _key_refusal_reason(keys) -> str | None:
    found = sorted({m for k in keys for m in _CODE_VARIANT_KEYS if f".{m}." in f".{k}"})
    return f"its weights have {', '.join(found)}: {_CODE_VARIANT}" if found else None


def _read_config(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise ModelNotFoundError(f"model folder {folder} does not exist")
    path = folder / "config.json"
    if not path.is_file():
        raise ModelNotFoundError(f"{path} not found: a jina-embeddings-v2 folder needs config.json")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc


@dataclass(frozen=True)
class JinaBertConfig:
    """The architecture fields of a jina-embeddings-v2 ``config.json`` (defaults: small-en)."""

    vocab_size: int = 30528
    hidden_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    intermediate_size: int = 2048
    max_position_embeddings: int = 8192
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, config: dict[str, Any], source: str = "config.json") -> JinaBertConfig:
        """Read a config dict. ``UnsupportedModelError`` if it is not a jina-embeddings-v2 text model
        (e.g. the base-code variant); ``ModelError`` if a field is missing or malformed."""
        reason = _refusal_reason(config)
        if reason:
            raise UnsupportedModelError(f"{source}: searchkit's JinaBERT cannot run it: {reason}")
        required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        missing = [k for k in required if config.get(k) is None]
        if missing:
            raise ModelError(f"{source}: config.json lacks {', '.join(missing)}")
        try:  # cast each field to its default's type (int or float)
            cfg = cls(**{k: type(getattr(cls, k))(config[k]) for k in cls.__dataclass_fields__ if config.get(k) is not None})
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: malformed config.json field: {exc}") from exc
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ModelError(f"{source}: hidden_size {cfg.hidden_size} is not a multiple of num_attention_heads")
        return cfg

    @classmethod
    def from_folder(cls, folder: str | Path) -> JinaBertConfig:
        """Read ``folder/config.json`` (``ModelNotFoundError`` if the folder or file is missing)."""
        return cls.from_dict(_read_config(Path(folder)), source=str(folder))

    def to_dict(self) -> dict[str, Any]:
        """A config.json in the published format, minus the remote-code ``auto_map``."""
        return {**asdict(self), "model_type": "bert", "architectures": ["JinaBertModel"],
                "position_embedding_type": "alibi", "feed_forward_type": "geglu", "emb_pooler": "mean"}


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi slope per head, [n_heads] float32: 2^(-8(i+1)/n) for a power of two n; otherwise the
    slopes of the largest power of two p < n, then the even-indexed slopes of 2p (n - p of them)."""
    def power_of_two(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (i + 1) / n) for i in range(n)]

    p = 2 ** int(math.floor(math.log2(n_heads)))
    extra = power_of_two(2 * p)[0::2][: n_heads - p] if p != n_heads else []
    return torch.tensor(power_of_two(p) + extra, dtype=torch.float32)


class _Plan:
    """How one forward pass slices its work: query blocks whose ALiBi mask is a view into a template
    T[0, h, a, c] = -slope_h·|a - c + s_max| of shape [1, H, Q, ≥ L + s_max], s_max the last block's
    start (rows s..e, keys 0..L are T[:, :, :e-s, s_max-s : s_max-s+L]), and feed-forward chunks."""

    def __init__(self, template: torch.Tensor, L: int, Q: int, key_pad: torch.Tensor | None, ffn_rows: int):
        self.template, self.L, self.s_max, self.ffn_rows = template, L, (L - 1) // Q * Q, ffn_rows
        self.key_pad = key_pad  # [B,1,1,L] bool, True on padding keys; None when nothing is padded
        self.blocks = [(s, min(s + Q, L)) for s in range(0, L, Q)]
        self._whole: torch.Tensor | None = None  # a single block's mask, built once for all layers

    def mask(self, s: int, e: int) -> torch.Tensor:
        if self._whole is not None:
            return self._whole
        off = self.s_max - s
        bias = self.template[:, :, : e - s, off : off + self.L]  # [1,H,e-s,L] view, no copy
        if self.key_pad is not None:
            bias = bias.masked_fill(self.key_pad, torch.finfo(bias.dtype).min)  # [B,H,e-s,L]
        if len(self.blocks) == 1:
            self._whole = bias
        return bias


class JinaBertSelfAttention(nn.Module):
    def __init__(self, cfg: JinaBertConfig):
        super().__init__()
        self.n_head, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, plan: _Plan) -> torch.Tensor:
        B, L, D = x.shape
        q = self.query(x).view(B, L, self.n_head, self.head_dim).transpose(1, 2)  # [B,H,L,hd]
        k = self.key(x).view(B, L, self.n_head, self.head_dim).transpose(1, 2)  # [B,H,L,hd]
        v = self.value(x).view(B, L, self.n_head, self.head_dim).transpose(1, 2)  # [B,H,L,hd]
        if len(plan.blocks) == 1:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=plan.mask(0, L))  # [B,H,L,hd]
        else:
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # once, not in every block's call
            y = torch.empty_like(q)  # [B,H,L,hd]
            for s, e in plan.blocks:  # each block's mask is [B|1,H,e-s,L], never [H,L,L]
                y[:, :, s:e] = F.scaled_dot_product_attention(q[:, :, s:e], k, v, attn_mask=plan.mask(s, e))
        return y.transpose(1, 2).reshape(B, L, D)  # [B,L,D]


class JinaBertSelfOutput(nn.Module):
    def __init__(self, cfg: JinaBertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(a) + x)  # [B,L,D]


class JinaBertGLUMLP(nn.Module):
    """GEGLU feed-forward: LayerNorm(wo(gelu(first half) · second half) + x), in token chunks."""

    def __init__(self, cfg: JinaBertConfig):
        super().__init__()
        self.intermediate = cfg.intermediate_size
        self.gated_layers = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.wo = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def ffn(self, h: torch.Tensor) -> torch.Tensor:
        gated, up = self.gated_layers(h).split(self.intermediate, dim=-1)  # 2 × [...,I]
        return self.layernorm(self.wo(F.gelu(gated) * up) + h)  # [...,D]

    def forward(self, x: torch.Tensor, plan: _Plan) -> torch.Tensor:
        if x.shape[0] * x.shape[1] <= plan.ffn_rows:
            return self.ffn(x)  # [B,L,D]
        flat = x.reshape(-1, x.shape[-1])  # [B·L,D]
        out = torch.empty_like(flat)  # [B·L,D]
        for s in range(0, flat.shape[0], plan.ffn_rows):  # bounds the [n,2I] activations
            out[s : s + plan.ffn_rows] = self.ffn(flat[s : s + plan.ffn_rows])  # [n,D]
        return out.view_as(x)  # [B,L,D]


class JinaBertLayer(nn.Module):
    def __init__(self, cfg: JinaBertConfig):
        super().__init__()
        self.attention = nn.ModuleDict({"self": JinaBertSelfAttention(cfg), "output": JinaBertSelfOutput(cfg)})
        self.mlp = JinaBertGLUMLP(cfg)

    def forward(self, x: torch.Tensor, plan: _Plan) -> torch.Tensor:
        x = self.attention["output"](self.attention["self"](x, plan), x)  # [B,L,D]
        return self.mlp(x, plan)  # [B,L,D]


class JinaBertEmbeddings(nn.Module):
    def __init__(self, cfg: JinaBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids))


class JinaBertModel(nn.Module):
    """The JinaBERT encoder; its parameter names are the published checkpoints' keys.

    ``block_elems`` bounds the working set of one slice: a query block's mask holds at most about
    that many elements (B·H·rows·L), a feed-forward chunk rows·2I. None: 2**24 on CPU (256-row blocks
    for small-en at 8192 tokens; smaller blocks save little memory and cost time), 2**26 on GPU.
    """

    def __init__(self, config: JinaBertConfig, block_elems: int | None = None):
        super().__init__()
        self.config, self.block_elems = config, block_elems
        self.embeddings = JinaBertEmbeddings(config)
        self.encoder = nn.ModuleDict({"layer": nn.ModuleList(JinaBertLayer(config) for _ in range(config.num_hidden_layers))})
        self._templates: dict[tuple, torch.Tensor] = {}  # ALiBi templates by (L, rows, device, dtype)

    def _budget(self, device: torch.device) -> int:
        return self.block_elems or (2**24 if device.type == "cpu" else 2**26)

    def _block_rows(self, B: int, L: int, device: torch.device) -> int:
        rows = self._budget(device) // (B * self.config.num_attention_heads * L)
        return L if rows >= L else max(32, rows // 16 * 16)

    def _template(self, L: int, Q: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (L, Q, str(device), dtype)
        if key not in self._templates:
            s_max = (L - 1) // Q * Q  # start of the last block
            width = -(-(L + s_max) // 16) * 16  # rows 16-aligned, as fused attention kernels like
            a = torch.arange(Q, device=device)[:, None]  # [Q,1] row within a block
            c = torch.arange(width, device=device)[None, :]  # [1,W] shifted key
            slopes = alibi_slopes(self.config.num_attention_heads).to(device)  # [H]
            template = -slopes[:, None, None] * (a - c + s_max).abs().float()  # [H,Q,W]
            if len(self._templates) >= 2:
                self._templates.pop(next(iter(self._templates)))
            self._templates[key] = template.unsqueeze(0).to(dtype)  # [1,H,Q,W]
        return self._templates[key]

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings (last hidden state) [B, L, D] of ``input_ids`` [B, L].

        ``attention_mask`` [B, L]: 1 = token, 0 = padding (left, right or mixed padding leaves the
        real tokens' embeddings unchanged). ``token_type_ids`` default to zeros.
        """
        B, L = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)  # [B,L,D]
        key_pad = None
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            key_pad = ~attention_mask.bool()[:, None, None, :]  # [B,1,1,L]
        Q = self._block_rows(B, L, x.device)
        ffn_rows = max(256, self._budget(x.device) // (2 * self.config.intermediate_size))
        plan = _Plan(self._template(L, Q, x.device, x.dtype), L, Q, key_pad, ffn_rows)
        for layer in self.encoder["layer"]:
            x = layer(x, plan)  # [B,L,D]
        return x


def _find_weights(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise ModelNotFoundError(f"no weights in {folder}: expected {' or '.join(WEIGHT_FILES)}")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, pickle refused by weights_only, ...
        raise ModelError(f"cannot read weights {path}: {exc}") from exc


def is_jina_v2_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a jina-embeddings-v2 text checkpoint this module runs: config.json says
    alibi + geglu without base-code markers, and (safetensors, whose header is cheap to read) no
    weight name of the base-code layout. Never raises."""
    folder = Path(path)
    try:
        if _refusal_reason(_read_config(folder)):
            return False
        weights = _find_weights(folder)
        if weights.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(weights), framework="pt") as f:
                return _key_refusal_reason(f.keys()) is None
        return True
    except Exception:
        return False


def looks_like_jinabert(path: str | Path) -> bool:
    """Whether ``path``'s config.json describes any JinaBERT (ALiBi BERT), base-code included. Such a
    folder belongs to ``build_sentence_transformer`` (which runs or refuses it), never to a plain
    transformers BERT, which would silently compute wrong vectors. Never raises."""
    try:
        return _read_config(Path(path)).get("position_embedding_type") == "alibi"
    except Exception:
        return False


def load_jina_model(folder: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None) -> JinaBertModel:
    """Load a jina-embeddings-v2 folder strictly, in eval mode, without gradients.

    ``dtype`` defaults to float32 on CPU and float16 on GPU (bfloat16 works too). Raises
    ``ModelNotFoundError`` (folder, config.json or weights missing), ``UnsupportedModelError``
    (not a jina-v2 text model, e.g. base-code) or ``ModelError`` (a weight missing, unexpected or
    of the wrong shape, each named).
    """
    folder = Path(folder)
    config = JinaBertConfig.from_folder(folder)
    path = _find_weights(folder)
    state = _read_state_dict(path)
    if state and all(k.startswith("bert.") for k in state):
        state = {k[len("bert."):]: v for k, v in state.items()}
    reason = _key_refusal_reason(state)
    if reason:
        raise UnsupportedModelError(f"{folder}: searchkit's JinaBERT cannot run it: {reason}")
    state = {k: v for k, v in state.items() if not k.startswith(_IGNORED_PREFIXES) and k not in _IGNORED_KEYS}

    with torch.device("meta"):  # no random init, no second copy of the weights
        model = JinaBertModel(config)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        problems = ([f"missing weights: {', '.join(missing)}"] if missing else []) + \
                   ([f"unexpected weights: {', '.join(unexpected)}"] if unexpected else [])
        raise ModelError(f"{path} does not match its config.json ({config.hidden_size}d, "
                         f"{config.num_hidden_layers} layers): {'; '.join(problems)}")
    wrong = [f"{k} {tuple(state[k].shape)}, expected {tuple(t.shape)}" for k, t in expected.items()
             if state[k].shape != t.shape]
    if wrong:
        raise ModelError(f"{path}: weights of the wrong shape for its config.json: {'; '.join(wrong)}")
    model.load_state_dict(state, strict=True, assign=True)
    device = torch.device(device)
    dtype = dtype or (torch.float16 if device.type in ("cuda", "mps") else torch.float32)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def _load_tokenizer(folder: Path):
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.txt").is_file():
        raise ModelNotFoundError(f"no tokenizer in {folder}: expected tokenizer.json (or vocab.txt)")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:
        raise ModelError(f"cannot load the tokenizer of {folder}: {exc}") from exc
    if not tok.is_fast:
        raise ModelError(f"the tokenizer of {folder} is not a fast tokenizer (offsets are needed)")
    return tok


@functools.lru_cache(maxsize=None)
def _module_class() -> type:
    """The class ``JinaBertModule``, defined on first use so that importing this file (say, for
    ``is_jina_v2_folder``) does not import sentence-transformers (about 3 s)."""
    try:
        from sentence_transformers.base.modules.input_module import InputModule
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import InputModule

    class JinaBertModule(InputModule):
        """Sentence-transformers input module: tokenizes texts, returns float32 ``token_embeddings``."""

        save_in_root = True

        def __init__(self, model: JinaBertModel, tokenizer, max_seq_length: int | None = None):
            super().__init__()
            self.model, self.tokenizer = model, tokenizer
            self.max_seq_length = max_seq_length or model.config.max_position_embeddings

        @property
        def max_seq_length(self) -> int:
            """Longer inputs are truncated; kept as the tokenizer's ``model_max_length``."""
            return self.tokenizer.model_max_length

        @max_seq_length.setter
        def max_seq_length(self, value: int) -> None:
            self.tokenizer.model_max_length = int(value)

        def preprocess(self, inputs, prompt: str | None = None, **kwargs) -> dict[str, torch.Tensor]:
            """Texts (or (text, text) pairs) → padded ``input_ids``, ``attention_mask``, ``token_type_ids``."""
            pairs = bool(inputs) and isinstance(inputs[0], (tuple, list))
            first = [t[0] for t in inputs] if pairs else list(inputs)
            first = [prompt + t for t in first] if prompt else first
            return dict(self.tokenizer(first, [t[1] for t in inputs] if pairs else None, padding=True,
                                       truncation="longest_first", max_length=self.max_seq_length, return_tensors="pt"))

        def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
            h = self.model(features["input_ids"], features.get("attention_mask"), features.get("token_type_ids"))
            features["token_embeddings"] = h.float()  # [B,L,D]
            return features

        def get_word_embedding_dimension(self) -> int:
            return self.model.config.hidden_size

        get_embedding_dimension = get_word_embedding_dimension

        def save(self, output_path: str, *args, **kwargs) -> None:
            """Write config.json, model.safetensors (published key names) and the tokenizer: a folder
            ``build_sentence_transformer`` loads (sentence-transformers itself refuses custom modules)."""
            from safetensors.torch import save_file

            out = Path(output_path)
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(self.model.config.to_dict(), indent=2), encoding="utf-8")
            save_file({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()},
                      str(out / "model.safetensors"))
            self.save_tokenizer(str(out))

    JinaBertModule.__module__, JinaBertModule.__qualname__ = __name__, "JinaBertModule"
    return JinaBertModule


def build_sentence_transformer(folder: str | Path, device: str = "cpu"):
    """A ``SentenceTransformer`` of [JinaBertModule, mean Pooling] (no Normalize) for a jina-v2 folder.

    Runs from the local folder alone: no hub access, no remote code. ``max_seq_length`` starts at
    the config's ``max_position_embeddings`` (8192). Raises like ``load_jina_model``.
    """
    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling

    folder = Path(folder)
    model = load_jina_model(folder, device=device)
    module = _module_class()(model, _load_tokenizer(folder))
    return SentenceTransformer(modules=[module, Pooling(model.config.hidden_size, "mean")], device=str(device))
