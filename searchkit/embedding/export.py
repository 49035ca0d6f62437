"""Exporting the embedding model to ONNX (torch is needed here, and only here, for the ONNX path).

The graph maps ``input_ids`` and ``attention_mask`` (both ``[batch, tokens]`` int64, dynamic) to
``token_embeddings`` ``[batch, tokens, dim]`` float32: the last hidden state, exactly what the
torch runtime hands the Embedder, so windows, pooling and late chunking do not change.

BERT-style models (the bundled all-MiniLM-L6-v2) export through their sentence-transformers
token module. searchkit's JinaBERT is exported through :class:`_JinaBertGraph`, the same
arithmetic as :class:`~searchkit.embedding.jinabert.JinaBertModel` written without its
length-dependent Python branches (query blocks, the "nothing padded" shortcut), which tracing
would freeze at the example's shape. Its ALiBi bias is built in the graph from the input length,
so any length works, 8192-token windows included.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ModelError
from . import jinabert, models, onnx_cache
from .onnx_cache import ExportManifest
from .torch_runtime import TorchEncoder

log = logging.getLogger(__name__)

OPSET = 17  # LayerNormalization as one op
INPUTS = ["input_ids", "attention_mask"]
OUTPUT = "token_embeddings"


class _TokenModule(nn.Module):
    """A sentence-transformers token module (BERT and kin) as ``(ids, mask) -> token embeddings``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        features = {"input_ids": input_ids, "attention_mask": attention_mask,
                    "token_type_ids": torch.zeros_like(input_ids)}
        return self.module(features)["token_embeddings"].float()  # [B,L,D]


class _JinaBertGraph(nn.Module):
    """JinaBERT's forward for export: attention with an additive ALiBi + padding bias computed
    from the input's length, for any batch and length.

    Attention runs one head at a time (a loop the trace unrolls): ONNX Runtime then holds one
    head's [B, L, L] scores at a time instead of all heads' (at 8192 tokens, 256 MB against
    2 GB per tensor for small-en's 8 heads), and the bias is never stored per head.
    """

    def __init__(self, model: jinabert.JinaBertModel):
        super().__init__()
        self.model = model
        cfg = model.config
        self.head_dim = cfg.head_dim
        self.slopes = [float(s) for s in jinabert.alibi_slopes(cfg.num_attention_heads)]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.model.embeddings(input_ids, torch.zeros_like(input_ids))  # [B,L,D]
        pos = torch.cumsum(torch.ones_like(input_ids[0]), 0).float()  # [L] 1..L, traced from the input
        dist = (pos[None, :] - pos[:, None]).abs()  # [L,L]
        pad = (1.0 - attention_mask[:, None, :].float()) * torch.finfo(torch.float32).min  # [B,1,L]
        scale, hd = self.head_dim ** -0.5, self.head_dim
        for layer in self.model.encoder["layer"]:
            att = layer.attention["self"]
            q, k, v = att.query(x) * scale, att.key(x), att.value(x)  # [B,L,D] each
            heads = []
            for h, slope in enumerate(self.slopes):
                cols = slice(h * hd, (h + 1) * hd)
                scores = q[..., cols] @ k[..., cols].transpose(-1, -2)  # [B,L,L]
                scores = scores - slope * dist + pad  # [B,L,L]
                heads.append(scores.softmax(-1) @ v[..., cols])  # [B,L,hd]
            x = layer.attention["output"](torch.cat(heads, -1), x)  # [B,L,D]
            x = layer.mlp.ffn(x)  # [B,L,D]
        return x


def _graph_module(st_model) -> nn.Module:
    first = st_model[0]
    inner = getattr(first, "model", None)
    if isinstance(inner, jinabert.JinaBertModel):
        return _JinaBertGraph(inner)
    return _TokenModule(first)


def _to_onnx(module: nn.Module, pad_id: int, cls_id: int, sep_id: int) -> bytes:
    # Two rows, the second padded, so the traced graph keeps the padding path.
    # The values do not matter to the graph, only that they are valid ids.
    ids = torch.full((2, 12), cls_id, dtype=torch.long)
    ids[0, -1], ids[1, 6] = sep_id, sep_id
    ids[1, 7:] = pad_id
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    buffer = io.BytesIO()
    # The tracer warns about Python branches on shapes in transformers' mask code; the example's
    # padded row keeps the branch every real batch takes, and the equality tests check it.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (ids, mask), buffer, input_names=INPUTS, output_names=[OUTPUT],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"},
                                        OUTPUT: {0: "batch", 1: "tokens"}},
                          opset_version=OPSET, dynamo=False)
    return buffer.getvalue()


def _quantize(fp32: bytes) -> bytes:
    """Dynamic int8 quantisation of the weights (activations stay float, scaled per batch)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="searchkit-int8-") as tmp:
        src, dst = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        src.write_bytes(fp32)
        logging.disable(logging.WARNING)  # its advice to pre-process goes to the root logger
        try:
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        return dst.read_bytes()


def _tokenizer_json(tokenizer) -> str:
    """The fast tokenizer's own definition, with the truncation and padding of its file removed
    (the Embedder cuts windows itself and asks for whole texts, as the torch runtime does)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend.to_str()


def export_source(config: ModelConfig, source: models.ModelSource, quantize: str = "none",
                  force: bool = False) -> Path:
    """Export a located model to the ONNX cache; returns the export folder.

    Nothing is exported when an intact export is already there (unless ``force``). The fp32
    graph is always made; ``quantize="int8"`` adds the int8 one made from it.

    Raises:
        ModelError: the model cannot be loaded or exported.
    """
    folder = onnx_cache.export_folder(source.folder, config.onnx_cache)
    manifest = None if force else ExportManifest.read(folder)
    fp32_name, int8_name = onnx_cache.QUANTIZE_FILES["none"], onnx_cache.QUANTIZE_FILES["int8"]
    fp32 = onnx_cache.read_verified(folder, manifest, fp32_name) if manifest else None
    int8 = onnx_cache.read_verified(folder, manifest, int8_name) if manifest else None
    if fp32 is not None and (quantize != "int8" or int8 is not None):
        return folder
    log.info("exporting %s to ONNX%s in %s (once; needs torch)", source.name,
             " (fp32 and int8)" if quantize == "int8" else "", folder)
    st_model = models.load_folder(source.folder, device="cpu", trust_remote_code=config.trust_remote_code)
    st_model.eval()
    encoder = TorchEncoder(st_model, source.name)
    if fp32 is None:
        try:
            fp32 = _to_onnx(_graph_module(st_model), encoder.pad_id, encoder.cls_id, encoder.sep_id)
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types
            raise ModelError(f"model {source.name} could not be exported to ONNX: {exc}".splitlines()[0]) from None
        int8 = None  # made from the old graph: make it again from the new one if asked
        onnx_cache.write_file(folder, fp32_name, fp32)
    if quantize == "int8" and int8 is None:
        int8 = _quantize(fp32)
        onnx_cache.write_file(folder, int8_name, int8)
    files = {fp32_name: onnx_cache.checksum(fp32)}
    if int8 is not None:
        files[int8_name] = onnx_cache.checksum(int8)
    onnx_cache.write_file(folder, onnx_cache.TOKENIZER, _tokenizer_json(encoder.tokenizer).encode("utf-8"))
    ExportManifest(model=source.name, dimension=encoder.dimension, max_tokens=encoder.max_tokens,
                   position_limit=encoder.position_limit, cls_id=int(encoder.cls_id),
                   sep_id=int(encoder.sep_id), pad_id=int(encoder.pad_id), files=files).write(folder)
    return folder
