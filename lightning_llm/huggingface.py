"""Hugging Face model folders in and out: a mapping table per architecture, proven equal by ``transformers``.

A Hugging Face folder holds ``config.json`` (its ``architectures`` names the model class), the weights
(``model.safetensors``, possibly sharded with an index, or ``pytorch_model.bin``, read with
``weights_only=True``) and tokenizer files (``tokenizer.json``, or GPT-2's ``vocab.json`` + ``merges.txt``).
Each supported architecture says how its config becomes one of this project's model configs, which tensor
names correspond, and which are stored transposed; a tensor left unmapped on either side is an error naming
it, never skipped. Only options with a faithful counterpart are accepted (an export of a model with rotary
positions is refused, naming the option), so an import or an export gives the same logits as ``transformers``
(tests/test_huggingface.py).

Supported: ``GPT2LMHeadModel`` <-> ``model=gpt``; ``BertForMaskedLM`` <-> ``model=encoder`` (post-LN, erf
GELU), and ``BertForPreTraining`` <-> an encoder with ``num_classes=2`` (its next-sentence head is our
pooler + classifier); ``MarianMTModel`` <-> ``model=decoder`` (post-LN, [sin | cos] position tables, the
decoder starting from Marian's own start token).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lightning_llm.errors import CheckpointError

if TYPE_CHECKING:
    from lightning_llm.tokenizers import Tokenizer

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "HFFolderError",
    "architecture_of",
    "from_hf_state",
    "has_hf_tokenizer",
    "is_hf_folder",
    "load_hf_model",
    "load_hf_run",
    "load_hf_tokenizer",
    "model_params",
    "read_hf_weights",
    "save_hf_folder",
    "to_hf_config",
    "to_hf_state",
]

CONFIG_FILE = "config.json"
GPT2_END_OF_TEXT = "<|endoftext|>"


class HFFolderError(CheckpointError):
    """A Hugging Face folder that cannot be used; the message names the folder, the file or the option."""


@dataclass(frozen=True)
class Architecture:
    """How one ``transformers`` model class maps onto a model plugin of this project."""

    hf_class: str  # the name in config.json's "architectures", e.g. GPT2LMHeadModel
    model: str  # our model plugin
    params_from_hf: Callable[[dict[str, Any]], dict[str, Any]]  # config.json -> our model params
    hf_config: Callable[[dict[str, Any]], dict[str, Any]]  # our model params -> config.json
    # (our name pattern, HF name pattern), regexes with the same groups. A tuple of HF patterns means our
    # one tensor is theirs concatenated along dim 0 (BERT's query, key and value are our fused c_attn).
    names: tuple[tuple[str, str | tuple[str, ...]], ...]
    transposed: re.Pattern[str]  # our names whose HF tensor is stored transposed (Conv1D)
    ignored_hf: re.Pattern[str]  # HF entries that are not weights (buffers some versions save)
    vocab_tables: tuple[str, ...] = ()  # our tensors with one row per token (cut to the vocabulary on export)
    tied: tuple[str, str] | None = None  # (our name, its tie) written once by HF when tied
    # Which of our models (its params) this class exports; one line saying why not otherwise.
    exports: Callable[[dict[str, Any]], str | None] = lambda params: None
    # Task heads (our names) that fine-tuning may size anew, e.g. a classifier for another number of
    # classes, and the params that size them: a fine-tuning run takes those from its data, not config.json.
    task_heads: re.Pattern[str] = re.compile(r"(?!)")
    task_params: tuple[str, ...] = ()
    # Our name as the table spells it, given all our names: an encoder-decoder numbers its blocks in one
    # list, encoder first; the table names encoder and decoder layers apart.
    canonical: Callable[[str, Collection[str]], str] = lambda name, names: name
    # HF logit biases of shape (1, vocabulary) we have no counterpart for: zero on import (a non-zero one
    # is refused, naming it), written as zeros on export.
    zero_biases: tuple[str, ...] = ()


# --------------------------------------------------------------------------- GPT-2


def _gpt2_params(hf: dict[str, Any]) -> dict[str, Any]:
    """GPT-2's config.json as ``model=gpt`` params, refusing options with no counterpart."""
    expected = {
        "activation_function": "gelu_new",  # GELU with the tanh approximation, as our gelu MLP
        "layer_norm_epsilon": 1e-5,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
    }
    for key, value in expected.items():
        if hf.get(key, value) != value:
            raise HFFolderError(f"GPT-2 option {key}={hf[key]!r} has no counterpart here (only {value!r})")
    n_embd = hf.get("n_embd", 768)
    if hf.get("n_inner") not in (None, 4 * n_embd):
        raise HFFolderError(f"GPT-2 option n_inner={hf['n_inner']} has no counterpart here (only 4 * n_embd)")
    return {
        "n_layer": hf.get("n_layer", 12),
        "n_head": hf.get("n_head", 12),
        "n_embd": n_embd,
        "block_size": hf.get("n_positions", 1024),
        "bias": True,
        "positions": "learned",
        "mlp": "gelu",
        "norm": "layernorm",
        "tie_embeddings": hf.get("tie_word_embeddings", True),
        "dropout": 0.0,
    }


def _gpt2_config(params: dict[str, Any]) -> dict[str, Any]:
    """``model=gpt`` params as GPT-2's config.json, refusing options GPT-2 does not have."""
    faithful = {"bias": True, "positions": "learned", "mlp": "gelu", "norm": "layernorm"}
    for key, value in faithful.items():
        if params.get(key) != value:
            raise HFFolderError(
                f"model.{key}={params.get(key)!r} has no GPT-2 counterpart (GPT-2 has {key}={value!r}); only "
                "a gpt with " + ", ".join(f"{k}={v}" for k, v in faithful.items()) + " exports"
            )
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": params["vocab_size"],
        "n_positions": params["block_size"],
        "n_embd": params["n_embd"],
        "n_layer": params["n_layer"],
        "n_head": params["n_head"],
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": params.get("tie_embeddings", True),
        "resid_pdrop": params.get("dropout", 0.0),
        "embd_pdrop": params.get("dropout", 0.0),
        "attn_pdrop": params.get("dropout", 0.0),
    }


GPT2 = Architecture(
    hf_class="GPT2LMHeadModel",
    model="gpt",
    params_from_hf=_gpt2_params,
    hf_config=_gpt2_config,
    names=(
        (r"wte\.weight", r"transformer\.wte\.weight"),
        (r"wpe\.weight", r"transformer\.wpe\.weight"),
        (r"blocks\.(\d+)\.(ln_1|ln_2)\.(weight|bias)", r"transformer\.h\.\1\.\2\.\3"),
        (r"blocks\.(\d+)\.attn\.(c_attn|c_proj)\.(weight|bias)", r"transformer\.h\.\1\.attn\.\2\.\3"),
        (r"blocks\.(\d+)\.mlp\.(c_fc|c_proj)\.(weight|bias)", r"transformer\.h\.\1\.mlp\.\2\.\3"),
        (r"ln_f\.(weight|bias)", r"transformer\.ln_f\.\1"),
        (r"lm_head\.weight", r"lm_head\.weight"),
    ),
    transposed=re.compile(r"blocks\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight"),
    ignored_hf=re.compile(r"transformer\.h\.\d+\.attn\.(bias|masked_bias)"),
    vocab_tables=("wte.weight", "lm_head.weight"),
    tied=("lm_head.weight", "wte.weight"),
)

# --------------------------------------------------------------------------- BERT


def _bert_params(hf: dict[str, Any]) -> dict[str, Any]:
    """BERT's config.json as ``model=encoder`` params (post-LN, erf GELU, its LayerNorm eps)."""
    activations = {"gelu": "gelu_erf", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "relu": "relu"}
    activation = hf.get("hidden_act", "gelu")
    if activation not in activations:
        raise HFFolderError(
            f"BERT option hidden_act={activation!r} has no counterpart here (only {', '.join(activations)})"
        )
    expected = {"position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False}
    for key, value in expected.items():
        if hf.get(key, value) != value:
            raise HFFolderError(f"BERT option {key}={hf[key]!r} has no counterpart here (only {value!r})")
    hidden = hf.get("hidden_size", 768)
    if hf.get("intermediate_size", 4 * hidden) != 4 * hidden:
        raise HFFolderError(
            f"BERT option intermediate_size={hf['intermediate_size']} has no counterpart here (only 4 * "
            f"hidden_size = {4 * hidden})"
        )
    if not hf.get("tie_word_embeddings", True):
        raise HFFolderError(
            "BERT option tie_word_embeddings=false has no counterpart here (the decoder is tied)"
        )
    return {
        "n_layer": hf.get("num_hidden_layers", 12),
        "n_head": hf.get("num_attention_heads", 12),
        "n_embd": hidden,
        "block_size": hf.get("max_position_embeddings", 512),
        "n_segments": hf.get("type_vocab_size", 2),
        "dropout": hf.get("hidden_dropout_prob", 0.1),
        "positions": "learned",
        "norm": "layernorm",
        "norm_eps": hf.get("layer_norm_eps", 1e-12),
        "prenorm": False,
        "mlp": activations[activation],
        "bias": True,
    }


def _bert_config(hf_class: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def config(params: dict[str, Any]) -> dict[str, Any]:
        """``model=encoder`` params as BERT's config.json, refusing options BERT does not have."""
        faithful = {"bias": True, "positions": "learned", "norm": "layernorm", "prenorm": False}
        for key, value in faithful.items():
            if params.get(key) != value:
                raise HFFolderError(
                    f"model.{key}={params.get(key)!r} has no BERT counterpart (BERT has {key}={value!r}); "
                    "only an encoder with " + ", ".join(f"{k}={v}" for k, v in faithful.items()) + " exports"
                )
        activations = {"gelu_erf": "gelu", "gelu": "gelu_pytorch_tanh", "relu": "relu"}
        if params.get("mlp") not in activations:
            raise HFFolderError(f"model.mlp={params.get('mlp')!r} has no BERT counterpart")
        dropout = params.get("dropout", 0.1)
        return {
            "architectures": [hf_class],
            "model_type": "bert",
            "vocab_size": params["vocab_size"],
            "hidden_size": params["n_embd"],
            "num_hidden_layers": params["n_layer"],
            "num_attention_heads": params["n_head"],
            "intermediate_size": 4 * params["n_embd"],
            "hidden_act": activations[params["mlp"]],
            "max_position_embeddings": params["block_size"],
            "type_vocab_size": params.get("n_segments", 2),
            "layer_norm_eps": params.get("norm_eps", 1e-12),
            "hidden_dropout_prob": dropout,
            "attention_probs_dropout_prob": dropout,
            "position_embedding_type": "absolute",
            "tie_word_embeddings": True,
        }

    return config


_BERT_LAYER = r"bert\.encoder\.layer\.\1"
_BERT_NAMES: tuple[tuple[str, str | tuple[str, ...]], ...] = (
    (r"wte\.weight", r"bert\.embeddings\.word_embeddings\.weight"),
    (r"wpe\.weight", r"bert\.embeddings\.position_embeddings\.weight"),
    (r"wse\.weight", r"bert\.embeddings\.token_type_embeddings\.weight"),
    (r"ln_emb\.(weight|bias)", r"bert\.embeddings\.LayerNorm\.\1"),
    (
        r"blocks\.(\d+)\.attn\.c_attn\.(weight|bias)",
        tuple(f"{_BERT_LAYER}\\.attention\\.self\\.{part}\\.\\2" for part in ("query", "key", "value")),
    ),
    (r"blocks\.(\d+)\.attn\.c_proj\.(weight|bias)", _BERT_LAYER + r"\.attention\.output\.dense\.\2"),
    (r"blocks\.(\d+)\.ln_1\.(weight|bias)", _BERT_LAYER + r"\.attention\.output\.LayerNorm\.\2"),
    (r"blocks\.(\d+)\.mlp\.c_fc\.(weight|bias)", _BERT_LAYER + r"\.intermediate\.dense\.\2"),
    (r"blocks\.(\d+)\.mlp\.c_proj\.(weight|bias)", _BERT_LAYER + r"\.output\.dense\.\2"),
    (r"blocks\.(\d+)\.ln_2\.(weight|bias)", _BERT_LAYER + r"\.output\.LayerNorm\.\2"),
    (r"mlm_head\.dense\.(weight|bias)", r"cls\.predictions\.transform\.dense\.\1"),
    (r"mlm_head\.norm\.(weight|bias)", r"cls\.predictions\.transform\.LayerNorm\.\1"),
    (r"mlm_head\.decoder\.weight", r"cls\.predictions\.decoder\.weight"),
    (r"mlm_head\.decoder\.bias", r"cls\.predictions\.bias"),
)


def _bert_exports(num_classes: int) -> Callable[[dict[str, Any]], str | None]:
    def exports(params: dict[str, Any]) -> str | None:
        if params.get("num_classes", 0) == num_classes:
            return None
        return (
            f"model.num_classes={params.get('num_classes', 0)} has no BERT counterpart with a masked-LM head "
            "(BertForMaskedLM: 0, BertForPreTraining's next-sentence head: 2)"
        )

    return exports


def _bert_pretraining_params(hf: dict[str, Any]) -> dict[str, Any]:
    return {**_bert_params(hf), "num_classes": 2}  # the next-sentence head


_BERT_COMMON: dict[str, Any] = dict(
    model="encoder",
    transposed=re.compile(r"(?!)"),  # BERT's Linear layers are stored as ours, (out, in)
    ignored_hf=re.compile(r"bert\.embeddings\.(position_ids|token_type_ids)"),
    vocab_tables=("wte.weight", "mlm_head.decoder.weight", "mlm_head.decoder.bias"),
    tied=("mlm_head.decoder.weight", "wte.weight"),
)

BERT_MLM = Architecture(
    hf_class="BertForMaskedLM",
    params_from_hf=_bert_params,
    hf_config=_bert_config("BertForMaskedLM"),
    names=_BERT_NAMES,
    exports=_bert_exports(0),
    **_BERT_COMMON,
)

# Pretraining's two heads: the masked-LM one, and next-sentence prediction, a 2-way classifier on the tanh
# pooler of the first position: exactly our pooler + classifier with num_classes=2.
BERT_PRETRAINING = Architecture(
    hf_class="BertForPreTraining",
    params_from_hf=_bert_pretraining_params,
    hf_config=_bert_config("BertForPreTraining"),
    names=(
        *_BERT_NAMES,
        (r"pooler\.(weight|bias)", r"bert\.pooler\.dense\.\1"),
        (r"classifier\.(weight|bias)", r"cls\.seq_relationship\.\1"),
    ),
    exports=_bert_exports(2),
    task_heads=re.compile(r"classifier\.(weight|bias)"),
    task_params=("num_classes",),
    **_BERT_COMMON,
)


# --------------------------------------------------------------------------- Marian


_MARIAN_ACTIVATIONS = {
    "relu": "relu",
    "swish": "silu",
    "silu": "silu",
    "gelu": "gelu_erf",
    "gelu_new": "gelu",
}


def _marian_params(hf: dict[str, Any]) -> dict[str, Any]:
    """Marian's config.json as ``model=decoder`` params: post-LN, sinusoidal [sin | cos] positions, embeddings
    scaled by sqrt(d_model) and shared by source, target and head, the decoder starting from its own token."""
    activation = hf.get("activation_function", "gelu")
    if activation not in _MARIAN_ACTIVATIONS:
        raise HFFolderError(
            f"Marian option activation_function={activation!r} has no counterpart here (only "
            f"{', '.join(_MARIAN_ACTIVATIONS)})"
        )
    d_model, heads = hf.get("d_model", 1024), hf.get("encoder_attention_heads", 16)
    required = {
        "scale_embedding": True,  # ours scales sinusoidal-position models' embeddings by sqrt(d_model)
        "share_encoder_decoder_embeddings": True,
        "tie_word_embeddings": True,
        "decoder_attention_heads": heads,
        "encoder_ffn_dim": 4 * d_model,
        "decoder_ffn_dim": 4 * d_model,
        "decoder_vocab_size": hf.get("vocab_size"),
    }
    defaults = {"scale_embedding": False, "decoder_vocab_size": None}  # MarianConfig's, where they differ
    for key, value in required.items():
        found = hf.get(key, defaults.get(key, value))
        if found != value and not (key == "decoder_vocab_size" and found is None):  # None: vocab_size
            raise HFFolderError(f"Marian option {key}={found!r} has no counterpart here (only {value!r})")
    return {
        "n_layer": hf.get("encoder_layers", 12),
        "n_decoder_layer": hf.get("decoder_layers", 12),
        "n_head": heads,
        "n_embd": d_model,
        "block_size": hf.get("max_position_embeddings", 1024),
        "dropout": hf.get("dropout", 0.1),
        "attn_dropout": hf.get("attention_dropout", 0.0),
        "bias": True,
        "prenorm": False,
        "positions": "sinusoidal",
        "positions_layout": "halves",
        "mlp": _MARIAN_ACTIVATIONS[activation],
        "norm": "layernorm",
        "decoder_start_id": hf.get("decoder_start_token_id", hf.get("pad_token_id")),
    }


def _marian_config(params: dict[str, Any]) -> dict[str, Any]:
    """``model=decoder`` params as Marian's config.json, refusing options Marian does not have."""
    faithful = {
        "bias": True,
        "prenorm": False,
        "positions": "sinusoidal",
        "positions_layout": "halves",
        "norm": "layernorm",
    }
    for key, value in faithful.items():
        if params.get(key) != value:
            raise HFFolderError(
                f"model.{key}={params.get(key)!r} has no Marian counterpart (Marian has {key}={value!r}); "
                "only a decoder with " + ", ".join(f"{k}={v}" for k, v in faithful.items()) + " exports"
            )
    activations = {ours: theirs for theirs, ours in _MARIAN_ACTIVATIONS.items() if theirs != "silu"}
    if params.get("mlp") not in activations:
        raise HFFolderError(f"model.mlp={params.get('mlp')!r} has no Marian counterpart")
    n_embd, dropout = params["n_embd"], params.get("dropout", 0.1)
    return {
        "architectures": ["MarianMTModel"],
        "model_type": "marian",
        "is_encoder_decoder": True,
        "vocab_size": params["vocab_size"],
        "decoder_vocab_size": params["vocab_size"],
        "d_model": n_embd,
        "encoder_layers": params["n_layer"],
        "decoder_layers": params.get("n_decoder_layer") or params["n_layer"],
        "encoder_attention_heads": params["n_head"],
        "decoder_attention_heads": params["n_head"],
        "encoder_ffn_dim": 4 * n_embd,
        "decoder_ffn_dim": 4 * n_embd,
        "activation_function": activations[params["mlp"]],
        "max_position_embeddings": params["block_size"],
        "scale_embedding": True,
        "share_encoder_decoder_embeddings": True,
        "tie_word_embeddings": True,
        "dropout": dropout,
        "attention_dropout": dropout if params.get("attn_dropout") is None else params["attn_dropout"],
        "activation_dropout": 0.0,
        "decoder_start_token_id": params["decoder_start_id"],
    }


def _encoder_and_decoder_layers(name: str, names: Collection[str]) -> str:
    """``blocks.<i>.`` as ``encoder.<i>.`` or ``decoder.<i - n_layer>.`` (the blocks with cross-attention)."""
    match = re.match(r"blocks\.(\d+)\.(.*)", name)
    if match is None:
        return name
    decoders = [int(m[1]) for n in names if (m := re.match(r"blocks\.(\d+)\.cross_attn\.", n))]
    first_decoder = min(decoders, default=len(names))
    index = int(match[1])
    if index < first_decoder:
        return f"encoder.{index}.{match[2]}"
    return f"decoder.{index - first_decoder}.{match[2]}"


def _marian_attention(ours: str, theirs: str) -> tuple[tuple[str, str | tuple[str, ...]], ...]:
    """Our fused attention (q, k, v in one c_attn) as Marian's three projections, and the output one."""
    side = r"encoder" if ours.startswith("encoder") else r"decoder"
    layer = rf"model\.{side}\.layers\.\1\.{theirs}"
    return (
        (rf"{ours}\.c_attn\.(weight|bias)", tuple(rf"{layer}\.{p}_proj\.\2" for p in ("q", "k", "v"))),
        (rf"{ours}\.c_proj\.(weight|bias)", rf"{layer}\.out_proj\.\2"),
    )


MARIAN = Architecture(
    hf_class="MarianMTModel",
    model="decoder",
    params_from_hf=_marian_params,
    hf_config=_marian_config,
    names=(
        (r"wte\.weight", r"model\.shared\.weight"),
        (r"lm_head\.weight", r"lm_head\.weight"),
        *_marian_attention(r"encoder\.(\d+)\.attn", "self_attn"),
        (r"encoder\.(\d+)\.ln_1\.(weight|bias)", r"model\.encoder\.layers\.\1\.self_attn_layer_norm\.\2"),
        (r"encoder\.(\d+)\.mlp\.c_fc\.(weight|bias)", r"model\.encoder\.layers\.\1\.fc1\.\2"),
        (r"encoder\.(\d+)\.mlp\.c_proj\.(weight|bias)", r"model\.encoder\.layers\.\1\.fc2\.\2"),
        (r"encoder\.(\d+)\.ln_2\.(weight|bias)", r"model\.encoder\.layers\.\1\.final_layer_norm\.\2"),
        *_marian_attention(r"decoder\.(\d+)\.attn", "self_attn"),
        (r"decoder\.(\d+)\.ln_1\.(weight|bias)", r"model\.decoder\.layers\.\1\.self_attn_layer_norm\.\2"),
        *_marian_attention(r"decoder\.(\d+)\.cross_attn", "encoder_attn"),
        (r"decoder\.(\d+)\.ln_2\.(weight|bias)", r"model\.decoder\.layers\.\1\.encoder_attn_layer_norm\.\2"),
        (r"decoder\.(\d+)\.mlp\.c_fc\.(weight|bias)", r"model\.decoder\.layers\.\1\.fc1\.\2"),
        (r"decoder\.(\d+)\.mlp\.c_proj\.(weight|bias)", r"model\.decoder\.layers\.\1\.fc2\.\2"),
        (r"decoder\.(\d+)\.ln_3\.(weight|bias)", r"model\.decoder\.layers\.\1\.final_layer_norm\.\2"),
    ),
    transposed=re.compile(r"(?!)"),  # Marian's Linear layers are stored as ours, (out, in)
    # Position tables are derived (the same sinusoids), saved by some versions: not weights.
    ignored_hf=re.compile(r"model\.(encoder|decoder)\.embed_positions\.weight"),
    vocab_tables=("wte.weight", "lm_head.weight"),
    tied=("lm_head.weight", "wte.weight"),
    canonical=_encoder_and_decoder_layers,
    zero_biases=("final_logits_bias",),
)

ARCHITECTURES = {
    architecture.hf_class: architecture for architecture in (GPT2, BERT_MLM, BERT_PRETRAINING, MARIAN)
}


def export_architecture(params: dict[str, Any]) -> Architecture:
    """The architecture our model (``{"name": ..., **params}``) exports as; one line why not otherwise."""
    candidates = [
        architecture for architecture in ARCHITECTURES.values() if architecture.model == params["name"]
    ]
    if not candidates:
        exportable = sorted({architecture.model for architecture in ARCHITECTURES.values()})
        raise HFFolderError(
            f"model={params['name']} has no Hugging Face counterpart here; exportable models: "
            f"{', '.join(exportable)}"
        )
    reasons = [architecture.exports(params) for architecture in candidates]
    for architecture, reason in zip(candidates, reasons, strict=True):
        if reason is None:
            return architecture
    raise HFFolderError(reasons[0])


# --------------------------------------------------------------------------- reading a folder


def is_hf_folder(path: str | Path) -> bool:
    """Whether ``path`` is a Hugging Face model folder (it holds ``config.json``)."""
    return (Path(path) / CONFIG_FILE).is_file()


def read_hf_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HFFolderError(f"{folder / CONFIG_FILE} is not readable JSON: {error}") from None
    if not isinstance(config, dict):
        raise HFFolderError(f"{folder / CONFIG_FILE} is not a JSON object")
    return config


def architecture_of(config: dict[str, Any], folder: Path) -> Architecture:
    """The supported architecture config.json names; one line naming the supported ones otherwise."""
    named = config.get("architectures") or []
    for name in named:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    shown = ", ".join(named) or f"model_type={config.get('model_type')!r}"
    raise HFFolderError(
        f"{folder}: architecture {shown} is not supported; supported: {', '.join(ARCHITECTURES)}"
    )


def model_params(config: dict[str, Any], folder: Path) -> tuple[Architecture, dict[str, Any]]:
    """The architecture and our model params (its vocab_size left to the tokenizer) of a config.json."""
    architecture = architecture_of(config, folder)
    try:
        return architecture, architecture.params_from_hf(config)
    except HFFolderError as error:
        raise HFFolderError(f"{folder}: {error}") from None


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's weights: safetensors (one file or sharded with an index), else
    ``pytorch_model.bin`` read with ``weights_only=True`` (tensors only, no code)."""
    from safetensors.torch import load_file

    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return load_file(single)
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {name: tensor for shard in shards for name, tensor in load_file(folder / shard).items()}
    binary = folder / "pytorch_model.bin"
    if binary.is_file():
        try:
            return torch.load(binary, map_location="cpu", weights_only=True)
        except Exception as error:  # pickled code or damage: one line naming the file
            raise HFFolderError(f"{binary} is not a readable weights file: {error}") from None
    raise HFFolderError(f"{folder} holds no weights (model.safetensors or pytorch_model.bin)")


# --------------------------------------------------------------------------- mapping tensors


def from_hf_state(
    architecture: Architecture, hf_state: dict[str, torch.Tensor], ours: dict[str, torch.Tensor], where: Path
) -> dict[str, torch.Tensor]:
    """``hf_state`` renamed and laid out as ``ours`` (the state dict of the model to load into), checking
    that every tensor on both sides is mapped. Our vocabulary rows past the checkpoint's (the padding up to
    a multiple of 64, tokens added to its tokenizer) keep ``ours``' values."""
    mapped, new, skipped = map_hf_state(architecture, hf_state, ours, where)
    if new:
        hf_names = _hf_names(architecture, new[0], ours)
        raise HFFolderError(
            f"{where}: no tensor for {new[0]} (looked for {_shown(hf_names)}); "
            f"not {architecture.hf_class} weights"
        )
    if skipped:
        raise HFFolderError(f"{where}: {skipped[0]} does not fit this model")
    return mapped


def map_hf_state(
    architecture: Architecture, hf_state: dict[str, torch.Tensor], ours: dict[str, torch.Tensor], where: Path
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """``(mapped, new, skipped)`` for fine-tuning: the checkpoint's tensors under our names and layout; our
    names it has no tensor for (a head the task adds, e.g. a classifier); and its heads this model lacks or
    sizes differently (another number of classes). A tensor the architecture's table does not know is not a
    head but another architecture's: the load is refused naming it."""
    hf_state = {
        name: value for name, value in hf_state.items() if not architecture.ignored_hf.fullmatch(name)
    }
    for name in architecture.zero_biases:
        bias = hf_state.pop(name, None)
        if bias is not None and bool(bias.any()):
            raise HFFolderError(f"{where}: {name} is not zero, and this model has no counterpart for it")
    unknown = sorted(name for name in hf_state if not _in_table(architecture, name))
    if unknown:
        raise HFFolderError(f"{where}: tensors with no counterpart here: {', '.join(unknown[:3])}")
    mapped: dict[str, torch.Tensor] = {}
    new: list[str] = []
    skipped: list[str] = []
    used: set[str] = set()
    for name, target in ours.items():
        hf_names = _hf_names(architecture, name, ours)
        if hf_names and hf_names[0] not in hf_state and architecture.tied and name == architecture.tied[0]:
            hf_names = _hf_names(architecture, architecture.tied[1], ours)  # stored once, as the embedding
        if not hf_names or any(hf_name not in hf_state for hf_name in hf_names):
            new.append(name)
            continue
        used.update(hf_names)
        value = torch.cat([hf_state[hf_name] for hf_name in hf_names])
        value = value.t() if architecture.transposed.fullmatch(name) else value
        fitted = _fit_rows(value, target, grow=name in architecture.vocab_tables)
        if fitted is None and architecture.task_heads.fullmatch(name):
            skipped.append(name)  # a head sized for another task; ours keeps its initialisation
            new.append(name)
            continue
        if fitted is None:
            raise HFFolderError(
                f"{where}: {name} has shape {tuple(value.shape)} there, {tuple(target.shape)} here; the "
                "config and the weights do not match"
            )
        mapped[name] = fitted
    skipped += sorted(set(hf_state) - used)
    return mapped, new, skipped


def to_hf_state(
    architecture: Architecture, ours: dict[str, torch.Tensor], vocab_size: int
) -> dict[str, torch.Tensor]:
    """Our model's state dict as the HF model's, the vocabulary cut to ``vocab_size`` rows, fused tensors
    split, and a tied head written once (as ``transformers`` saves it)."""
    result: dict[str, torch.Tensor] = {}
    for name, value in ours.items():
        if architecture.tied and name == architecture.tied[0] and _same(value, ours[architecture.tied[1]]):
            continue
        hf_names = _hf_names(architecture, name, ours)
        if hf_names is None:
            raise HFFolderError(f"{name} has no {architecture.hf_class} counterpart")
        value = value.t() if architecture.transposed.fullmatch(name) else value
        if name in architecture.vocab_tables:
            value = value[:vocab_size]
        for hf_name, part in zip(hf_names, value.chunk(len(hf_names)), strict=True):
            result[hf_name] = part.detach().contiguous().clone()
    for name in architecture.zero_biases:
        result[name] = torch.zeros(1, vocab_size, dtype=ours[architecture.vocab_tables[0]].dtype)
    return result


def to_hf_config(architecture: Architecture, params: dict[str, Any]) -> dict[str, Any]:
    return architecture.hf_config(params)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape


def _hf_names(architecture: Architecture, name: str, names: Collection[str]) -> tuple[str, ...] | None:
    """The HF names of our tensor ``name`` (several when it is theirs fused), ``names`` being all of ours;
    None when it has none."""
    name = architecture.canonical(name, names)
    for ours, theirs in architecture.names:
        match = re.fullmatch(ours, name)
        if match:
            patterns = (theirs,) if isinstance(theirs, str) else theirs
            return tuple(match.expand(pattern.replace("\\.", ".")) for pattern in patterns)
    return None


def _shown(hf_names: tuple[str, ...] | None) -> str:
    return " + ".join(hf_names) if hf_names else "a counterpart"


def _in_table(architecture: Architecture, hf_name: str) -> bool:
    """Whether the architecture's table has an entry for ``hf_name`` (its groups matching anything)."""
    for _, theirs in architecture.names:
        for pattern in (theirs,) if isinstance(theirs, str) else theirs:
            if re.fullmatch(re.sub(r"\\\d", "(.+)", pattern), hf_name):
                return True
    return False


def _fit_rows(value: torch.Tensor, target: torch.Tensor, grow: bool) -> torch.Tensor | None:
    """``value`` in ``target``'s shape: equal, or (``grow``: vocabulary tables) fewer rows; None when it does
    not fit. The rows of tokens the checkpoint lacks (special tokens the framework added) are the mean of
    its rows, as ``transformers``' ``resize_token_embeddings`` starts them: deterministic, and scored like
    an average token rather than at random by a model that never saw them (a bias keeps ``target``'s)."""
    if value.shape == target.shape:
        return value.to(target.dtype)
    if (
        grow
        and value.dim() == target.dim()
        and value.shape[1:] == target.shape[1:]
        and value.shape[0] < target.shape[0]
    ):
        rows = target.clone()
        rows[: value.shape[0]] = value.to(target.dtype)
        if value.dim() == 2:
            rows[value.shape[0] :] = value.mean(dim=0).to(target.dtype)
        return rows
    return None


# --------------------------------------------------------------------------- whole folders


def has_hf_tokenizer(folder: Path) -> bool:
    """Whether the folder holds tokenizer files ``load_hf_tokenizer`` reads."""
    return (folder / "tokenizer.json").is_file() or all(
        (folder / name).is_file() for name in ("vocab.json", "merges.txt")
    )


def load_hf_tokenizer(folder: Path) -> Tokenizer:
    """The folder's tokenizer: ``tokenizer.json``, or GPT-2's ``vocab.json`` + ``merges.txt`` (byte-level
    BPE), with the framework's special tokens made special (added after its vocabulary where missing)."""
    from lightning_llm.tokenizers import Tokenizer

    if (folder / "tokenizer.json").is_file():
        return Tokenizer.from_file(folder / "tokenizer.json")
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    if vocab.is_file() and merges.is_file():
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers

        backend = HFTokenizer(models.BPE.from_file(str(vocab), str(merges)))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        if backend.token_to_id(GPT2_END_OF_TEXT) is not None:  # special in GPT-2's own tokenizer files
            backend.add_special_tokens([GPT2_END_OF_TEXT])
        return Tokenizer.from_backend(backend, source=str(folder))
    raise HFFolderError(
        f"{folder} holds no tokenizer (tokenizer.json, or vocab.json + merges.txt); pass one with "
        "tokenizer=pretrained tokenizer.path=<tokenizer.json>"
    )


def load_hf_run(folder: str | Path) -> tuple[torch.nn.Module, Tokenizer, dict[str, Any]]:
    """``(model, tokenizer, model config node)`` of a Hugging Face folder: its architecture is checked
    first, then its tokenizer and weights are read."""
    folder = Path(folder)
    model_params(read_hf_config(folder), folder)
    tokenizer = load_hf_tokenizer(folder)
    model, node = load_hf_model(folder, tokenizer.vocab_size)
    return model, tokenizer, node


def load_hf_model(folder: str | Path, vocab_size: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The folder's model as one of ours, with ``vocab_size`` (its tokenizer's, which may exceed the
    checkpoint's by added special tokens) and every weight mapped; also its model config node
    (``{"name": ..., **params}``), as a run config holds it."""
    import lightning_llm.models  # noqa: F401 - registers the built-in models, every architecture's target
    from lightning_llm import registry

    folder = Path(folder)
    architecture, params = model_params(read_hf_config(folder), folder)
    model = registry.build("model", architecture.model, vocab_size=vocab_size, **params)
    state = from_hf_state(architecture, read_hf_weights(folder), model.state_dict(), folder)
    model.load_state_dict(state, strict=True)
    return model, {"name": architecture.model, **params}


def save_hf_folder(
    model: torch.nn.Module, model_config: dict[str, Any], tokenizer: Tokenizer, out: Path
) -> Path:
    """Write ``model`` (configured by ``model_config``, ``{"name": ..., **params}``) and ``tokenizer`` as a
    Hugging Face folder ``out``, new or empty: config.json, model.safetensors, tokenizer.json and
    tokenizer_config.json, each written atomically."""
    from safetensors.torch import save

    from lightning_llm.atomic import atomic_write, write_text

    architecture = export_architecture(model_config)
    params = {**model_config, "vocab_size": tokenizer.vocab_size}
    if "decoder_start_id" in params and params["decoder_start_id"] is None:
        params["decoder_start_id"] = tokenizer.bos_id  # ours starts from bos unless told otherwise
    config = to_hf_config(architecture, params)
    config.update(_special_token_ids(tokenizer))
    state = to_hf_state(architecture, model.state_dict(), tokenizer.vocab_size)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HFFolderError(f"--out {out}: not a new or empty folder; choose another")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "model.safetensors") as file:
        file.write(save(state, metadata={"format": "pt"}))
    write_text(out / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    tokenizer.save(out / "tokenizer.json")
    write_text(out / "tokenizer_config.json", json.dumps(_tokenizer_config(tokenizer), indent=2) + "\n")
    return out


def _special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    return {
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
    }


def _tokenizer_config(tokenizer: Tokenizer) -> dict[str, Any]:
    """What ``AutoTokenizer`` needs beside tokenizer.json: the fast tokenizer class and the special tokens
    (as this tokenizer spells them: ``[CLS]`` for a BERT one)."""
    roles = ("bos", "eos", "unk", "pad", "mask", "cls", "sep")
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **{f"{role}_token": tokenizer.special_token(f"<{role}>") for role in roles},
        "model_max_length": 1000000000000000019884624838656,
    }
