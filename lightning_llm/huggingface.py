"""Hugging Face model folders in and out: a mapping table per architecture, proven equal by ``transformers``.

A Hugging Face folder holds ``config.json`` (its ``architectures`` names the model class), the weights
(``model.safetensors``, possibly sharded with an index, or ``pytorch_model.bin``, read with
``weights_only=True``) and tokenizer files (``tokenizer.json``, or GPT-2's ``vocab.json`` + ``merges.txt``).
Each supported architecture says how its config becomes one of this project's model configs, which tensor
names correspond, and which are stored transposed; a tensor left unmapped on either side is an error naming
it, never skipped. Only options with a faithful counterpart are accepted (an export of a model with rotary
positions is refused, naming the option), so an import or an export gives the same logits as ``transformers``
(tests/test_huggingface.py).

Bad input is one line naming the file and the key: config.json's values are type- and range-checked and
its sizes compared with the weights' shapes before any model is built; every weights file (and a sharded
index, whose shards must lie inside the folder) is read through one function that turns library errors into
``HFFolderError``; a tensor that is not floating point, missing, extra, or a tied copy that differs from
what it is tied to, is refused by name.

Supported: ``GPT2LMHeadModel`` <-> ``model=gpt``; ``BertForMaskedLM`` <-> ``model=encoder`` (post-LN, the
masked-LM head's activation the blocks' own, as BERT's ``hidden_act``), and ``BertForPreTraining`` <-> an
encoder with ``num_classes=2`` (its next-sentence head is our pooler + classifier); ``MarianMTModel`` <->
``model=decoder`` (post-LN, [sin | cos] position tables, the decoder starting from Marian's own start token).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import secrets
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lightning_llm.errors import CheckpointError, first_line

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
    "map_hf_state",
    "model_params",
    "read_hf_shapes",
    "read_hf_weights",
    "save_hf_folder",
    "to_hf_config",
    "to_hf_state",
]

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
GPT2_END_OF_TEXT = "<|endoftext|>"
# Bounds on config.json's sizes, checked before the weights are: no model here is larger, and a value past
# them (n_layer=10**7, n_positions=2**40) would otherwise hang or exhaust memory while the model is built.
MAX_SIZE = 2**22
# Sinusoidal position tables are computed, not stored, so no weight bounds them: Marian's are 512 long.
MAX_SINUSOIDAL_POSITIONS = 2**16


_WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class HFFolderError(CheckpointError):
    """A Hugging Face folder that cannot be used; the message names the folder, the file or the option."""


@dataclass(frozen=True)
class Architecture:
    """How one ``transformers`` model class maps onto a model plugin of this project."""

    hf_class: str  # the name in config.json's "architectures", e.g. GPT2LMHeadModel
    model_type: str  # config.json's "model_type" for it, e.g. gpt2
    model: str  # our model plugin
    params_from_hf: Callable[[dict[str, Any]], dict[str, Any]]  # config.json -> our model params
    hf_config: Callable[[dict[str, Any]], dict[str, Any]]  # our model params -> config.json
    # (our name pattern, HF name pattern), regexes with the same groups. A tuple of HF patterns means our
    # one tensor is theirs concatenated along dim 0 (BERT's query, key and value are our fused c_attn).
    names: tuple[tuple[str, str | tuple[str, ...]], ...]
    transposed: re.Pattern[str]  # our names whose HF tensor is stored transposed (Conv1D)
    ignored_hf: re.Pattern[str]  # HF entries that are not weights (buffers some versions save)
    # HF tables derived from the config rather than learned (Marian's sinusoids), which ours computes: one
    # saved must hold those values, or the model would not be the one that file describes.
    derived_hf: re.Pattern[str] = re.compile(r"(?!)")
    # config.json's sizes and where the weights show them: (our param, its config.json key, HF tensor, dim);
    # "vocab_size" is config.json's own. Checked before the model is built.
    sizes: tuple[tuple[str, str, str, int], ...] = ()
    # Layer counts: (our param, its config.json key, HF name regex whose group 1 is the layer index).
    layers: tuple[tuple[str, str, str], ...] = ()
    vocab_tables: tuple[str, ...] = ()  # our tensors with one row per token (cut to the vocabulary on export)
    tied: tuple[str, str] | None = None  # (our name, its tie) written once by HF when tied
    # (HF name, the HF name it is a copy of): tied copies some versions save; accepted only when equal.
    copies: tuple[tuple[str, str], ...] = ()
    # Which of our models (its params) this class exports; one line saying why not otherwise.
    exports: Callable[[dict[str, Any]], str | None] = lambda params: None
    # Task heads (our names) a model may have that the checkpoint need not: new when it lacks them, sized
    # anew when it holds them for another task (a classifier for another number of classes); and the
    # params that size them: a fine-tuning run takes those from its data, not config.json.
    task_heads: re.Pattern[str] = re.compile(r"(?!)")
    task_params: tuple[str, ...] = ()
    # HF heads of the source's pretraining (BERT's pooler and next-sentence head) a model without them
    # drops, naming them in a warning; any other tensor without a counterpart is refused.
    pretraining_heads: re.Pattern[str] = re.compile(r"(?!)")
    # Special-token roles the model's default objective uses besides <eos> and <pad> (which may be eos):
    # a role the folder's tokenizer lacks is added as a new row only when listed here.
    roles: tuple[str, ...] = ()
    # Our name as the table spells it, given all our names: an encoder-decoder numbers its blocks in one
    # list, encoder first; the table names encoder and decoder layers apart.
    canonical: Callable[[str, Collection[str]], str] = lambda name, names: name
    # HF logit biases of shape (1, vocabulary) we have no counterpart for: zero on import (a non-zero one
    # is refused, naming it), written as zeros on export.
    zero_biases: tuple[str, ...] = ()


# --------------------------------------------------------------------------- config.json values


def _int(hf: dict[str, Any], key: str, default: int, maximum: int = MAX_SIZE) -> int:
    """config.json's ``key``, an integer in [1, maximum] (not a string, a float or a bool)."""
    value = hf.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        raise HFFolderError(f"{key}={value!r} is not an integer in [1, {maximum}]")
    return value


def _number(hf: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    """config.json's ``key``, a number in [low, high)."""
    value = hf.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value < high:
        raise HFFolderError(f"{key}={value!r} is not a number in [{low}, {high})")
    return float(value)


def _flag(hf: dict[str, Any], key: str, default: bool) -> bool:
    value = hf.get(key, default)
    if not isinstance(value, bool):
        raise HFFolderError(f"{key}={value!r} is not true or false")
    return value


def _choice(hf: dict[str, Any], family: str, key: str, default: str, choices: dict[str, str]) -> str:
    """Our name for config.json's ``key``, one of ``choices`` (theirs -> ours)."""
    value = hf.get(key, default)
    if not isinstance(value, str) or value not in choices:
        raise HFFolderError(
            f"{family} option {key}={value!r} has no counterpart here (only {', '.join(choices)})"
        )
    return choices[value]


def _require(hf: dict[str, Any], family: str, expected: dict[str, Any]) -> None:
    """Refuse options (absent: their ``expected`` value) that change the computation in a way ours cannot."""
    for key, value in expected.items():
        found = hf.get(key, value)
        if found != value or type(found) is not type(value):
            raise HFFolderError(f"{family} option {key}={found!r} has no counterpart here (only {value!r})")


# Options every PretrainedConfig has that would change the weights' shapes or the computation.
_COMMON = {"pruned_heads": {}}

# --------------------------------------------------------------------------- GPT-2

# GELU with the tanh approximation, as our gelu MLP: transformers' two spellings of it.
_GPT2_ACTIVATIONS = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu"}


def _gpt2_params(hf: dict[str, Any]) -> dict[str, Any]:
    """GPT-2's config.json as ``model=gpt`` params, refusing options with no counterpart.

    ``reorder_and_upcast_attn`` is accepted: it computes the same scores in float32 in another order (ours
    are float32 already), a difference of rounding only (tested)."""
    _require(
        hf,
        "GPT-2",
        {
            **_COMMON,
            "scale_attn_weights": True,  # scores divided by sqrt(head size), as ours
            "scale_attn_by_inverse_layer_idx": False,
            "add_cross_attention": False,  # cross-attention blocks, for an encoder-decoder's decoder
        },
    )
    mlp = _choice(hf, "GPT-2", "activation_function", "gelu_new", _GPT2_ACTIVATIONS)
    if _number(hf, "layer_norm_epsilon", 1e-5, 0.0, 1.0) != 1e-5:
        raise HFFolderError(
            f"GPT-2 option layer_norm_epsilon={hf['layer_norm_epsilon']!r} has no counterpart here "
            "(only 1e-05)"
        )
    n_embd = _int(hf, "n_embd", 768)
    if hf.get("n_inner") is not None and hf.get("n_inner") != 4 * n_embd:
        raise HFFolderError(
            f"GPT-2 option n_inner={hf['n_inner']!r} has no counterpart here (only 4 * n_embd)"
        )
    return {
        "n_layer": _int(hf, "n_layer", 12),
        "n_head": _int(hf, "n_head", 12),
        "n_embd": n_embd,
        "block_size": _int(hf, "n_positions", 1024),
        "bias": True,
        "positions": "learned",
        "mlp": mlp,
        "norm": "layernorm",
        "tie_embeddings": _flag(hf, "tie_word_embeddings", True),
        "dropout": _one_dropout(hf, "resid_pdrop", ("embd_pdrop", "attn_pdrop"), 0.1),
    }


def _one_dropout(hf: dict[str, Any], key: str, others: tuple[str, ...], default: float) -> float:
    """Our models' one dropout rate from config.json's ``key``; its other rates are range-checked and, where
    they differ, named in a warning (dropout changes training, not the outputs of the imported model)."""
    rate = _number(hf, key, default, 0.0, 1.0)
    differing = [
        f"{other}={value:g}" for other in others if (value := _number(hf, other, default, 0.0, 1.0)) != rate
    ]
    if differing:
        log.warning(
            "config.json: %s, while this model has one dropout rate: %s=%g", ", ".join(differing), key, rate
        )
    return rate


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
    model_type="gpt2",
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
    sizes=(
        ("vocab_size", "vocab_size", "transformer.wte.weight", 0),
        ("n_embd", "n_embd", "transformer.wte.weight", 1),
        ("block_size", "n_positions", "transformer.wpe.weight", 0),
    ),
    layers=(("n_layer", "n_layer", r"transformer\.h\.(\d+)\..+"),),
    vocab_tables=("wte.weight", "lm_head.weight"),
    tied=("lm_head.weight", "wte.weight"),
)

# --------------------------------------------------------------------------- BERT

# transformers' hidden_act -> our mlp; the masked-LM head's transform uses the same activation, as BERT's.
_BERT_ACTIVATIONS = {"gelu": "gelu_erf", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "relu": "relu"}


def _bert_params(hf: dict[str, Any]) -> dict[str, Any]:
    """BERT's config.json as ``model=encoder`` params (post-LN, its activation in the blocks and the head)."""
    mlp = _choice(hf, "BERT", "hidden_act", "gelu", _BERT_ACTIVATIONS)
    _require(
        hf,
        "BERT",
        {
            **_COMMON,
            "position_embedding_type": "absolute",
            "is_decoder": False,  # causal self-attention
            "add_cross_attention": False,
            "tie_word_embeddings": True,  # ours ties the decoder to the token embedding
        },
    )
    hidden = _int(hf, "hidden_size", 768)
    if hf.get("intermediate_size", 4 * hidden) != 4 * hidden:
        raise HFFolderError(
            f"BERT option intermediate_size={hf['intermediate_size']!r} has no counterpart here (only 4 * "
            f"hidden_size = {4 * hidden})"
        )
    return {
        "n_layer": _int(hf, "num_hidden_layers", 12),
        "n_head": _int(hf, "num_attention_heads", 12),
        "n_embd": hidden,
        "block_size": _int(hf, "max_position_embeddings", 512),
        "n_segments": _int(hf, "type_vocab_size", 2),
        "dropout": _one_dropout(hf, "hidden_dropout_prob", ("attention_probs_dropout_prob",), 0.1),
        "positions": "learned",
        "norm": "layernorm",
        "norm_eps": _number(hf, "layer_norm_eps", 1e-12, 1e-30, 1.0),
        "prenorm": False,
        "mlp": mlp,
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
            raise HFFolderError(
                f"model.mlp={params.get('mlp')!r} has no BERT counterpart (only {', '.join(activations)})"
            )
        if params.get("span_head"):
            raise HFFolderError(f"model.span_head=True has no {hf_class} counterpart")
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
    # The pooler: BertForPreTraining's, and saved by some BertForMaskedLM checkpoints (bert-base-uncased);
    # a model with a classifier takes it when the folder has it.
    (r"pooler\.(weight|bias)", r"bert\.pooler\.dense\.\1"),
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
    sizes=(
        ("vocab_size", "vocab_size", "bert.embeddings.word_embeddings.weight", 0),
        ("n_embd", "hidden_size", "bert.embeddings.word_embeddings.weight", 1),
        ("block_size", "max_position_embeddings", "bert.embeddings.position_embeddings.weight", 0),
        ("n_segments", "type_vocab_size", "bert.embeddings.token_type_embeddings.weight", 0),
    ),
    layers=(("n_layer", "num_hidden_layers", r"bert\.encoder\.layer\.(\d+)\..+"),),
    vocab_tables=("wte.weight", "mlm_head.decoder.weight", "mlm_head.decoder.bias"),
    tied=("mlm_head.decoder.weight", "wte.weight"),
    copies=(("cls.predictions.decoder.bias", "cls.predictions.bias"),),  # one parameter, saved twice
    task_heads=re.compile(r"(pooler|classifier|qa_outputs)\.(weight|bias)"),
    task_params=("num_classes",),
    pretraining_heads=re.compile(r"bert\.pooler\.dense\.(weight|bias)|cls\.seq_relationship\.(weight|bias)"),
    roles=("<unk>", "<mask>", "<cls>", "<sep>", "<bos>"),  # masked_lm keeps every special id out of masking
)

BERT_MLM = Architecture(
    hf_class="BertForMaskedLM",
    model_type="bert",
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
    model_type="bert",
    params_from_hf=_bert_pretraining_params,
    hf_config=_bert_config("BertForPreTraining"),
    names=(*_BERT_NAMES, (r"classifier\.(weight|bias)", r"cls\.seq_relationship\.\1")),
    exports=_bert_exports(2),
    **_BERT_COMMON,
)


# --------------------------------------------------------------------------- Marian


_MARIAN_ACTIVATIONS = {
    "relu": "relu",
    "swish": "silu",
    "silu": "silu",
    "gelu": "gelu_erf",
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
}
# Options of the BART-era MarianConfig that hub configs still carry and transformers no longer reads: a
# value other than Marian's own was written for another computation (pre-LN, a norm on the embeddings, a
# logits bias, learned positions), which neither transformers nor this project performs.
_MARIAN_LEGACY = {
    "normalize_before": False,
    "normalize_embedding": False,
    "add_final_layer_norm": False,
    "add_bias_logits": False,
    "static_position_embeddings": True,
}


def _marian_params(hf: dict[str, Any]) -> dict[str, Any]:
    """Marian's config.json as ``model=decoder`` params: post-LN, sinusoidal [sin | cos] positions, embeddings
    scaled by sqrt(d_model) and shared by source, target and head, the decoder starting from its own token."""
    mlp = _choice(hf, "Marian", "activation_function", "gelu", _MARIAN_ACTIVATIONS)
    d_model, heads = _int(hf, "d_model", 1024), _int(hf, "encoder_attention_heads", 16)
    vocab_size = _int(hf, "vocab_size", 58101)
    _require(hf, "Marian", {**_COMMON, **_MARIAN_LEGACY})
    required = {
        "scale_embedding": True,  # ours scales sinusoidal-position models' embeddings by sqrt(d_model)
        "share_encoder_decoder_embeddings": True,
        "tie_word_embeddings": True,
        "decoder_attention_heads": heads,
        "encoder_ffn_dim": 4 * d_model,
        "decoder_ffn_dim": 4 * d_model,
        "decoder_vocab_size": vocab_size,
    }
    defaults = {"scale_embedding": False, "decoder_vocab_size": None}  # MarianConfig's, where they differ
    for key, value in required.items():
        found = hf.get(key, defaults.get(key, value))
        if found != value and not (key == "decoder_vocab_size" and found is None):  # None: vocab_size
            raise HFFolderError(f"Marian option {key}={found!r} has no counterpart here (only {value!r})")
    start = hf.get("decoder_start_token_id", hf.get("pad_token_id"))
    if start is not None and (
        isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < vocab_size
    ):
        raise HFFolderError(
            f"decoder_start_token_id={start!r} is not a token id of this vocabulary (0 to {vocab_size - 1})"
        )
    forced = hf.get("forced_eos_token_id")
    if forced is not None and forced != hf.get("eos_token_id"):
        raise HFFolderError(
            f"Marian option forced_eos_token_id={forced!r} has no counterpart here (only the eos token, "
            f"eos_token_id={hf.get('eos_token_id')!r}, or none)"
        )
    return {
        "n_layer": _int(hf, "encoder_layers", 12),
        "n_decoder_layer": _int(hf, "decoder_layers", 12),
        "n_head": heads,
        "n_embd": d_model,
        "block_size": _int(hf, "max_position_embeddings", 1024, MAX_SINUSOIDAL_POSITIONS),
        "dropout": _number(hf, "dropout", 0.1, 0.0, 1.0),
        "attn_dropout": _number(hf, "attention_dropout", 0.0, 0.0, 1.0),
        "bias": True,
        "prenorm": False,
        "positions": "sinusoidal",
        "positions_layout": "halves",
        "mlp": mlp,
        "norm": "layernorm",
        "decoder_start_id": start,
        "forced_eos": forced is not None,
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
    model_type="marian",
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
    # Position tables are derived (the same sinusoids), saved by some versions: checked, not loaded.
    ignored_hf=re.compile(r"(?!)"),
    derived_hf=re.compile(r"model\.(encoder|decoder)\.embed_positions\.weight"),
    sizes=(
        ("vocab_size", "vocab_size", "model.shared.weight", 0),
        ("n_embd", "d_model", "model.shared.weight", 1),
    ),
    layers=(
        ("n_layer", "encoder_layers", r"model\.encoder\.layers\.(\d+)\..+"),
        ("n_decoder_layer", "decoder_layers", r"model\.decoder\.layers\.(\d+)\..+"),
    ),
    vocab_tables=("wte.weight", "lm_head.weight"),
    tied=("lm_head.weight", "wte.weight"),
    # The shared table, saved again as each side's by some versions (the OPUS-MT checkpoints on the hub).
    copies=(
        ("model.encoder.embed_tokens.weight", "model.shared.weight"),
        ("model.decoder.embed_tokens.weight", "model.shared.weight"),
    ),
    roles=("<unk>", "<bos>"),  # the data starts each target with bos, the model's own start token
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
    return (Path(path).expanduser() / CONFIG_FILE).is_file()


def read_hf_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # bad UTF-8 or JSON, a 5,000-digit number, nesting
        raise HFFolderError(f"{path} is not readable JSON: {first_line(error)}") from None
    if not isinstance(config, dict):
        raise HFFolderError(f"{path} is not a JSON object")
    return config


def architecture_of(config: dict[str, Any], folder: Path) -> Architecture:
    """The supported architecture config.json names; one line naming the supported ones otherwise."""
    named = config.get("architectures")
    if named is not None and (not isinstance(named, list) or not all(isinstance(n, str) for n in named)):
        raise HFFolderError(
            f"{Path(folder) / CONFIG_FILE}: architectures={named!r} is not a list of class names, e.g. "
            '["GPT2LMHeadModel"]'
        )
    supported = ", ".join(ARCHITECTURES)
    if not named:
        raise HFFolderError(
            f"{Path(folder) / CONFIG_FILE}: names no architectures (save_pretrained writes them, e.g. "
            f'["GPT2LMHeadModel"]); supported: {supported}'
        )
    for name in named:
        if name in ARCHITECTURES:
            architecture = ARCHITECTURES[name]
            if config.get("model_type", architecture.model_type) != architecture.model_type:
                raise HFFolderError(
                    f"{Path(folder) / CONFIG_FILE}: model_type={config.get('model_type')!r} does not go with "
                    f"architectures={named!r} (a {name} is model_type={architecture.model_type!r})"
                )
            return architecture
    raise HFFolderError(f"{folder}: architecture {', '.join(named)} is not supported; supported: {supported}")


def model_params(
    config: dict[str, Any], folder: Path, shapes: dict[str, tuple[int, ...]] | None = None
) -> tuple[Architecture, dict[str, Any]]:
    """The architecture and our model params (its vocab_size left to the tokenizer) of a config.json, its
    values checked (types, ranges) and its sizes compared with the weights' ``shapes`` (read from the
    folder's weights headers when not given), before any model is built."""
    folder = Path(folder)
    architecture = architecture_of(config, folder)
    try:
        params = architecture.params_from_hf(config)
        vocab_size = _int(
            config, "vocab_size", 0
        )  # config.json always states it; checked against the weights
    except HFFolderError as error:
        raise HFFolderError(f"{folder / CONFIG_FILE}: {error}") from None
    shapes = read_hf_shapes(folder) if shapes is None else shapes
    _check_sizes(architecture, {**params, "vocab_size": vocab_size}, _renamed(shapes, folder), folder)
    return architecture, params


def _check_sizes(
    architecture: Architecture, params: dict[str, Any], shapes: dict[str, tuple[int, ...]], folder: Path
) -> None:
    """config.json's sizes as the weights show them: widths, table lengths and layer counts."""
    where = folder / CONFIG_FILE
    for ours, key, hf_name, dim in architecture.sizes:
        shape = shapes.get(hf_name)
        if shape is not None and (len(shape) <= dim or shape[dim] != params[ours]):
            raise HFFolderError(
                f"{where}: {key}={params[ours]}, but {_weights_path(folder).name}'s {hf_name} has shape "
                f"{shape}; the config and the weights do not match"
            )
    for ours, key, pattern in architecture.layers:
        found: dict[int, str] = {}
        for name in sorted(shapes):
            if match := re.fullmatch(pattern, name):
                found.setdefault(int(match[1]), name)
        count = params[ours]
        if beyond := sorted(index for index in found if index >= count):
            raise HFFolderError(
                f"{_weights_path(folder)}: {found[beyond[0]]} is a layer past config.json's {key}={count}"
            )
        if missing := [index for index in range(count) if index not in found]:
            raise HFFolderError(
                f"{_weights_path(folder)} holds no tensor of layer {missing[0]}, though config.json says "
                f"{key}={count}"
            )


def _weights_path(folder: Path) -> Path:
    """The file that holds (or indexes) the folder's weights, to name in messages."""
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    return folder / "pytorch_model.bin.index.json"


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's weights: safetensors (one file or sharded with an index), else
    ``pytorch_model.bin`` (one file or sharded) read with ``weights_only=True`` (tensors only, no code)."""
    return _read_weights(Path(folder), header_only=False)


def read_hf_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor of the folder's weights, read from the safetensors headers alone."""
    return _read_weights(Path(folder), header_only=True)


def _read_weights(folder: Path, header_only: bool) -> dict[str, Any]:
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    binary, binary_index = folder / "pytorch_model.bin", folder / "pytorch_model.bin.index.json"
    if single.is_file():
        return _read_safetensors(single, header_only)
    if index.is_file():
        shards = _shards(index)
        return _from_shards(index, shards, lambda path: _read_safetensors(path, header_only))
    if binary.is_file():
        state = _read_binary(binary, verify=not header_only)
        return _shapes_of(state) if header_only else state
    if binary_index.is_file():
        shards = _shards(binary_index)
        state = _from_shards(binary_index, shards, lambda path: _read_binary(path, verify=not header_only))
        return _shapes_of(state) if header_only else state
    raise HFFolderError(f"{folder} holds no weights (model.safetensors or pytorch_model.bin)")


def _shapes_of(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in state.items()}


def _read_safetensors(path: Path, header_only: bool) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            if header_only:
                return {name: tuple(file.get_slice(name).get_shape()) for name in file.keys()}  # noqa: SIM118
            return {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    except Exception as error:  # SafetensorError, OSError, a bad header: one line naming the file
        raise HFFolderError(f"{path} is not a readable safetensors file: {first_line(error)}") from None


def _read_binary(path: Path, verify: bool) -> dict[str, torch.Tensor]:
    """A ``pytorch_model.bin``'s tensors, memory-mapped (its shapes cost no reading) when in torch's zip
    format, whose entries must be stored uncompressed as torch writes them (``torch_file_is_zip``). With
    ``verify`` (the weights are about to be read whole) each entry must match its stored CRC-32: torch does
    not check them, and damage inside a tensor would load as weights."""
    from lightning_llm.untrusted import torch_file_is_zip

    try:
        mmap = torch_file_is_zip(path, verify=verify)
    except CheckpointError as error:
        raise HFFolderError(str(error)) from None
    try:
        state = torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except pickle.UnpicklingError as error:  # weights_only refuses anything but tensors and containers
        raise HFFolderError(
            f"{path} is not a file of tensors alone ({_unpickling_reason(error)}); only tensors are read "
            "here, never code (weights_only=True): convert it to model.safetensors"
        ) from None
    except Exception as error:  # damage: one line naming the file
        raise HFFolderError(f"{path} is not a readable weights file: {first_line(error)}") from None
    if not isinstance(state, dict):
        raise HFFolderError(f"{path} holds a {type(state).__name__}, not a dict of named tensors")
    for name, tensor in state.items():
        if not isinstance(name, str):
            raise HFFolderError(f"{path}: entry {name!r} is keyed by a {type(name).__name__}, not a name")
        if not isinstance(tensor, torch.Tensor):
            raise HFFolderError(f"{path}: entry {name!r} is a {type(tensor).__name__}, not a tensor")
    return state


def _unpickling_reason(error: Exception) -> str:
    """The line of torch's several-paragraph weights_only refusal that says what was refused."""
    boilerplate = (
        "Weights only load failed",
        "Please file an issue",
        "Check the documentation",
        "In PyTorch",
    )
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if not line.startswith(boilerplate)), "unreadable")


def _shards(index: Path) -> dict[str, list[str]]:
    """An index's shard files (relative to its folder, never outside it) -> the names it assigns them."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # bad UTF-8 or JSON, a 5,000-digit number, nesting
        raise HFFolderError(f"{index} is not readable JSON: {first_line(error)}") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise HFFolderError(f"{index} has no weight_map (tensor name -> shard file)")
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise HFFolderError(f"{index}: weight_map's {name} maps to {shard!r}, not a file name")
        parts = Path(shard).parts
        if Path(shard).is_absolute() or ".." in parts or "\\" in shard:
            raise HFFolderError(f"{index}: weight_map's {name} points outside the folder ({shard})")
        if not (index.parent / shard).is_file():
            raise HFFolderError(f"{index}: shard {shard} (of {name}) is not in the folder")
        shards.setdefault(shard, []).append(name)
    return shards


def _from_shards(
    index: Path, shards: dict[str, list[str]], read: Callable[[Path], dict[str, Any]]
) -> dict[str, Any]:
    """Every shard's tensors, each shard holding exactly the names the index assigns it."""
    result: dict[str, Any] = {}
    for shard, names in shards.items():
        path = index.parent / shard
        tensors = read(path)
        if extra := sorted(set(tensors) - set(names)):
            raise HFFolderError(f"{path} holds {extra[0]}, which {index.name} does not assign to it")
        if missing := sorted(set(names) - set(tensors)):
            raise HFFolderError(f"{path} lacks {missing[0]}, which {index.name} assigns to it")
        result.update(tensors)
    return result


# --------------------------------------------------------------------------- mapping tensors


@dataclass
class _Mapped:
    """The outcome of mapping a checkpoint onto a model's state dict."""

    tensors: dict[str, torch.Tensor]  # ours, under our names and layout
    new: list[str]  # our task heads it has no tensor for (they keep their initialisation)
    resized: list[str]  # our task heads it holds for another task, sized differently (initialisation kept)
    dropped: list[str]  # its pretraining heads this model has no place for


def from_hf_state(
    architecture: Architecture, hf_state: dict[str, torch.Tensor], ours: dict[str, torch.Tensor], where: Path
) -> dict[str, torch.Tensor]:
    """``hf_state`` renamed and laid out as ``ours`` (the state dict of a model built from the same
    config.json), every tensor on both sides mapped. Our vocabulary rows past the checkpoint's (the padding
    up to a multiple of 64, tokens added to its tokenizer) are the mean of its rows."""
    result = _map(architecture, hf_state, ours, Path(where))
    if result.new or result.resized:
        name = (result.new or result.resized)[0]
        raise HFFolderError(f"{_named(where)}: no {architecture.hf_class} tensor fits {name} here")
    return result.tensors


def map_hf_state(
    architecture: Architecture, hf_state: dict[str, torch.Tensor], ours: dict[str, torch.Tensor], where: Path
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """``(mapped, new, skipped)`` for fine-tuning: the checkpoint's tensors under our names and layout; our
    task heads that keep their initialisation (it has no tensor for them, or sizes them for another task);
    and what is left out: those heads and its pretraining heads this model lacks (named in a warning).
    Any other tensor missing on either side, or one the table does not know, is refused, naming it."""
    if is_hf_folder(where):  # its config.json's sizes, checked against these weights
        model_params(read_hf_config(Path(where)), Path(where), _shapes_of(hf_state))
    result = _map(architecture, hf_state, ours, Path(where))
    return result.tensors, result.new + result.resized, result.resized + result.dropped


def _named(where: Path) -> Path:
    """The weights file of a folder (what messages name), or ``where`` itself."""
    return _weights_path(where) if Path(where).is_dir() else Path(where)


def _check_parts(
    architecture: Architecture, name: str, target: torch.Tensor, parts: dict[str, torch.Tensor], where: Path
) -> None:
    """Each of the checkpoint's tensors that make ``target`` (several for a fused one: BERT's query, key and
    value make our c_attn) has a shape it can be part of, checked one by one so the message names the tensor
    that does not fit (a scalar, or the one wrong part of a fused tensor)."""
    shape = tuple(target.t().shape if architecture.transposed.fullmatch(name) else target.shape)
    needed = (shape[0] // len(parts), *shape[1:])
    for hf_name, part in parts.items():
        if part.dim() == 0 or (len(parts) > 1 and tuple(part.shape) != needed):
            raise HFFolderError(
                f"{where}: {hf_name} has shape {tuple(part.shape)}, but {name} here needs {needed}"
                f"{f' from each of its {len(parts)} parts' if len(parts) > 1 else ''}; the config and the "
                "weights do not match"
            )


def _map(
    architecture: Architecture, hf_state: dict[str, torch.Tensor], ours: dict[str, torch.Tensor], where: Path
) -> _Mapped:
    where = _named(where)
    hf_state = _checked(architecture, hf_state, where)
    head, embedding = architecture.tied or ("", "")
    tied = head in ours and embedding in ours and _same(ours[head], ours[embedding])
    copies = list(architecture.copies)
    result = _Mapped({}, [], [], [])
    used: set[str] = set()
    for name, target in ours.items():
        hf_names = _hf_names(architecture, name, ours)
        if hf_names is None or any(hf_name not in hf_state for hf_name in hf_names):
            if architecture.task_heads.fullmatch(name):
                result.new.append(name)  # a head of the task's that this checkpoint has not
                continue
            if hf_names is None:
                raise HFFolderError(f"{where}: {name} here has no {architecture.hf_class} counterpart")
            if not (tied and name == head):
                missing = next(hf_name for hf_name in hf_names if hf_name not in hf_state)
                raise HFFolderError(f"{where} has no tensor {missing} (for {name} here)")
        if tied and name == head:  # written once, as the embedding; a copy saved too must equal it
            (embedding_name,) = _hf_names(architecture, embedding, ours) or ("",)
            copies += [(hf_name, embedding_name) for hf_name in hf_names or ()]
            hf_names = (embedding_name,)
        used.update(hf_names)
        parts = [hf_state[hf_name] for hf_name in hf_names]
        _check_parts(architecture, name, target, dict(zip(hf_names, parts, strict=True)), where)
        value = torch.cat(parts)
        value = value.t() if architecture.transposed.fullmatch(name) else value
        fitted = _fit_rows(value, target, grow=name in architecture.vocab_tables)
        if fitted is None and architecture.task_heads.fullmatch(name):
            result.resized.append(name)  # a head sized for another task; ours keeps its initialisation
            continue
        if fitted is None:
            expected = tuple(target.t().shape if architecture.transposed.fullmatch(name) else target.shape)
            expected = (expected[0] // len(parts), *expected[1:])
            raise HFFolderError(
                f"{where}: {hf_names[0]} has shape {tuple(parts[0].shape)}, but {name} here needs "
                f"{expected}; the config and the weights do not match"
            )
        result.tensors[name] = fitted
    rest = set(hf_state) - used
    for copy, original in copies:
        if copy in rest:
            if original not in hf_state or not torch.equal(hf_state[copy], hf_state[original]):
                raise HFFolderError(
                    f"{where}: {copy} differs from {original}, which config.json ties it to; transformers "
                    "would use one and ignore the other"
                )
            rest.discard(copy)
    result.dropped = sorted(name for name in rest if architecture.pretraining_heads.fullmatch(name))
    if unknown := sorted(rest - set(result.dropped)):
        raise HFFolderError(
            f"{where}: {unknown[0]} has no counterpart in this {architecture.model} "
            f"({architecture.hf_class} as config.json sizes it)"
            + (f", nor do {len(unknown) - 1} more" if len(unknown) > 1 else "")
        )
    if result.dropped:
        log.warning(
            "%s: dropped %s, %s pretraining heads this model has no place for",
            where,
            ", ".join(result.dropped),
            architecture.hf_class,
        )
    return result


def _checked(architecture: Architecture, hf_state: dict[str, torch.Tensor], where: Path) -> dict[str, Any]:
    """The checkpoint's weights: buffers left out, old names (LayerNorm ``gamma``/``beta``) renamed as
    transformers renames them, each a floating-point tensor, its logit biases zero."""
    state = {}
    for name, value in _renamed(hf_state, where).items():
        if architecture.ignored_hf.fullmatch(name):
            continue
        if value.dtype not in _WEIGHT_DTYPES:  # float8 too: stored for inference, not for training from
            raise HFFolderError(
                f"{where}: {name} holds {value.dtype} values; weights are floating point (float32, float16, "
                "bfloat16 or float64)"
            )
        if not bool(torch.isfinite(value).all()):
            raise HFFolderError(f"{where}: {name} holds NaN or infinite values")
        if architecture.derived_hf.fullmatch(name):
            _check_sinusoids(name, value, where)
            continue
        state[name] = value
    for name in architecture.zero_biases:
        bias = state.pop(name, None)
        if bias is not None and bool(bias.any()):
            raise HFFolderError(f"{where}: {name} is not zero, and this model has no counterpart for it")
    return state


def _check_sinusoids(name: str, value: torch.Tensor, where: Path) -> None:
    """A saved Marian position table must be the sinusoids ours computes ([sin | cos] halves)."""
    from lightning_llm.models.blocks import SinusoidalPositions

    if value.dim() != 2 or value.size(1) % 2:
        raise HFFolderError(f"{where}: {name} has shape {tuple(value.shape)}, not (positions, even width)")
    expected = SinusoidalPositions(value.size(1), value.size(0), layout="halves").pe
    tolerance = 1e-5 if value.element_size() >= 4 else 4e-3  # fp16/bf16 files round the sinusoids
    if not torch.allclose(value.float(), expected, atol=tolerance, rtol=0):
        worst = (value.float() - expected).abs().max().item()
        raise HFFolderError(
            f"{where}: {name} is not the sinusoidal table Marian computes (off by up to {worst:.3g}); this "
            "model computes its positions and has no place for a trained table"
        )


def _renamed(state: dict[str, Any], where: Path | None = None) -> dict[str, Any]:
    """``state`` with old checkpoints' LayerNorm parameters (``gamma``, ``beta``) as ``weight``, ``bias``."""
    result: dict[str, Any] = {}
    for name, value in state.items():
        new = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", name))
        if new in result or (new != name and new in state):
            raise HFFolderError(f"{where}: holds both {name} and {new}")
        result[new] = value
    return result


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


def _fit_rows(value: torch.Tensor, target: torch.Tensor, grow: bool) -> torch.Tensor | None:
    """``value`` in ``target``'s shape: equal, or (``grow``: vocabulary tables) fewer rows; None when it does
    not fit. The rows of tokens the checkpoint lacks (the padding up to a multiple of 64, special tokens an
    objective needs that its tokenizer lacks) are the mean of its rows, as ``transformers``'
    ``resize_token_embeddings`` starts them: deterministic, and scored like an average token rather than at
    random by a model that never saw them (a bias keeps ``target``'s)."""
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


def load_hf_tokenizer(folder: Path, roles: Collection[str] | None = None) -> Tokenizer:
    """The folder's tokenizer: ``tokenizer.json``, or GPT-2's ``vocab.json`` + ``merges.txt`` (byte-level
    BPE). Its own tokens play the framework's special roles where it has them (GPT-2's ``<|endoftext|>``,
    BERT's ``[CLS]``); of the roles it lacks, <eos> and ``roles`` (None: every one) are added as new
    tokens, <pad> otherwise being played by <eos>, and the rest left without a token, so the vocabulary,
    and the model's rows, stay the folder's."""
    from lightning_llm.tokenizers import Tokenizer
    from lightning_llm.tokenizers.base import TokenizerFileError

    folder = Path(folder)
    roles = None if roles is None else ("<eos>", *roles)  # every use ends a text
    if (folder / "tokenizer.json").is_file():
        try:
            return Tokenizer.from_file(folder / "tokenizer.json", roles=roles)
        except TokenizerFileError as error:
            raise HFFolderError(first_line(error)) from None
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    if vocab.is_file() and merges.is_file():
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers

        try:
            backend = HFTokenizer(models.BPE.from_file(str(vocab), str(merges)))
        except Exception as error:  # the Rust reader's own error type: one line naming the files
            raise HFFolderError(
                f"{vocab} + {merges.name} are not a BPE tokenizer: {first_line(error)}"
            ) from None
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        if backend.token_to_id(GPT2_END_OF_TEXT) is not None:  # special in GPT-2's own tokenizer files
            backend.add_special_tokens([GPT2_END_OF_TEXT])
        return Tokenizer.from_backend(backend, source=str(folder), roles=roles)
    raise HFFolderError(
        f"{folder} holds no tokenizer (tokenizer.json, or vocab.json + merges.txt); pass one with "
        "tokenizer=pretrained tokenizer.path=<tokenizer.json> (generate: --tokenizer <tokenizer.json>)"
    )


def load_hf_run(
    folder: str | Path, tokenizer_file: str | Path | None = None
) -> tuple[torch.nn.Module, Tokenizer, dict[str, Any]]:
    """``(model, tokenizer, model config node)`` of a Hugging Face folder: its architecture and config are
    checked first, then its tokenizer (``tokenizer_file``, a tokenizer.json or a folder holding one, for a
    folder that has none) and weights are read. The tokenizer adds only the special tokens the model's
    default objective needs (none for GPT-2, whose <|endoftext|> is also its padding), so the model keeps
    the folder's vocabulary and gives transformers' logits and loss over it."""
    from lightning_llm.tokenizers import Tokenizer

    folder = Path(folder)
    config = read_hf_config(folder)
    architecture, _ = model_params(config, folder)
    if tokenizer_file is None:
        tokenizer = load_hf_tokenizer(folder, roles=architecture.roles)
    elif has_hf_tokenizer(folder):
        raise HFFolderError(
            f"{folder} has its own tokenizer, which its model was trained with; a tokenizer is given only "
            "for a folder that has none"
        )
    else:
        tokenizer = Tokenizer.from_file(tokenizer_file, roles=("<eos>", *architecture.roles))
    rows = config["vocab_size"]
    check_hf_tokenizer(folder, tokenizer, config)
    if tokenizer.added_tokens:
        log.info(
            "%s: %s added to the vocabulary (rows %d.., the mean of the model's rows to start)",
            folder,
            ", ".join(tokenizer.added_tokens),
            rows,
        )
    model, node = load_hf_model(folder, max(tokenizer.vocab_size, rows))
    return model, tokenizer, node


def check_hf_tokenizer(folder: Path, tokenizer: Tokenizer, config: dict[str, Any] | None = None) -> None:
    """The tokenizer that reads a Hugging Face folder's model (its own, or one given) fits its config: no
    more tokens than the weights have rows (those ids would get the mean row, untrained), and the special ids
    config.json states are its tokens."""
    config = read_hf_config(folder) if config is None else config
    rows = config["vocab_size"]
    own = tokenizer.vocab_size - len(tokenizer.added_tokens)
    if own > rows:
        raise HFFolderError(
            f"{folder}: its tokenizer has {own} tokens, more than config.json's vocab_size={rows}; it is "
            "not this model's tokenizer"
        )
    _check_token_ids(config, tokenizer, folder)


def _check_token_ids(config: dict[str, Any], tokenizer: Tokenizer, folder: Path) -> None:
    """The special ids config.json states are token ids of the vocabulary, and the end of text it names (which
    transformers' generate stops on, and Marian's forces at the length limit) is the tokenizer's: the model
    here stops on the tokenizer's, and would otherwise generate other text than transformers does."""
    rows = config["vocab_size"]
    for key in ("eos_token_id", "forced_eos_token_id", "bos_token_id", "pad_token_id"):
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise HFFolderError(f"{folder / CONFIG_FILE}: {key}={value!r} is not a token id (an integer)")
        if not 0 <= value < rows:  # a tiny model keeping GPT2Config's default 50256: no token has it
            log.warning(
                "%s: %s=%d is no token id of this vocabulary (0 to %d), so no token has that role there; "
                "here the tokenizer's own special tokens play it",
                folder / CONFIG_FILE,
                key,
                value,
                rows - 1,
            )
            continue
        ends = key in ("eos_token_id", "forced_eos_token_id") and "<eos>" in tokenizer.roles
        if ends and value != tokenizer.eos_id:
            found = tokenizer.backend.id_to_token(value)
            raise HFFolderError(
                f"{folder / CONFIG_FILE}: {key}={value} is {found!r}, but the tokenizer's end of text is "
                f"{tokenizer.roles['<eos>']!r} ({tokenizer.eos_id}); the model would stop on another token "
                "than transformers' generate does: correct config.json or the tokenizer"
            )


def load_hf_model(folder: str | Path, vocab_size: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The folder's model as one of ours, with ``vocab_size`` rows (its tokenizer's, which may exceed the
    checkpoint's by added special tokens) and every weight mapped; also its model config node
    (``{"name": ..., **params}``), as a run config holds it."""
    import lightning_llm.models  # noqa: F401 - registers the built-in models, every architecture's target
    from lightning_llm import registry

    folder = Path(folder)
    shapes = read_hf_shapes(folder)
    architecture, params = model_params(read_hf_config(folder), folder, shapes)

    def build() -> torch.nn.Module:
        try:
            return registry.build("model", architecture.model, vocab_size=vocab_size, **params)
        except (TypeError, ValueError) as error:  # a combination the model refuses, e.g. heads not dividing
            raise HFFolderError(f"{folder / CONFIG_FILE}: {first_line(error)}") from None

    check_fits_weights(folder, build, shapes)
    model = build()
    weights = read_hf_weights(folder)
    state = from_hf_state(architecture, weights, model.state_dict(), folder)
    model.load_state_dict(state, strict=True)
    return model, {"name": architecture.model, **params}


def check_fits_weights(
    folder: Path, build: Callable[[], torch.nn.Module], shapes: dict[str, tuple[int, ...]] | None = None
) -> None:
    """The model ``build`` makes of config.json, built on the meta device, against the sizes of the folder's
    weights (``untrusted.check_stored_config``): a config far larger than its weights, e.g. a vocab_size
    whose embedding is missing from them, is refused before it takes memory. ``model_params`` compares
    the sizes whose tensors are present; this bounds the rest."""
    from lightning_llm.untrusted import check_stored_config

    shapes = read_hf_shapes(folder) if shapes is None else shapes
    stored = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    try:
        check_stored_config(build, stored, what="its model")
    except HFFolderError:
        raise
    except CheckpointError as error:
        raise HFFolderError(f"{folder / CONFIG_FILE}: {error}") from None


def save_hf_folder(
    model: torch.nn.Module, model_config: dict[str, Any], tokenizer: Tokenizer, out: Path
) -> Path:
    """Write ``model`` (configured by ``model_config``, ``{"name": ..., **params}``) and ``tokenizer`` as a
    Hugging Face folder ``out``, new or empty: config.json, model.safetensors, tokenizer.json and
    tokenizer_config.json, each written atomically."""
    from safetensors.torch import save

    from lightning_llm.atomic import TEMP_MARKER, atomic_write, blocked_parent, fsync_dir, write_text

    architecture = export_architecture(model_config)
    params = {**model_config, "vocab_size": tokenizer.vocab_size}
    if "decoder_start_id" in params and params["decoder_start_id"] is None:
        params["decoder_start_id"] = tokenizer.bos_id  # ours starts from bos unless told otherwise
    config = to_hf_config(architecture, params)
    config.update(_special_token_ids(tokenizer))
    if params.get("forced_eos"):  # a search cut off by its length ends with eos (Marian's generate)
        config["forced_eos_token_id"] = config["eos_token_id"]
    state = to_hf_state(architecture, model.state_dict(), tokenizer.vocab_size)
    if out.is_symlink():  # a link, to a folder or to nothing: written through, it would land elsewhere
        raise HFFolderError(f"--out {out}: a link; name a new or empty folder")
    if out.exists() and not out.is_dir():
        raise HFFolderError(f"--out {out}: a file; name a new or empty folder")
    if out.exists() and any(out.iterdir()):
        raise HFFolderError(f"--out {out}: a folder that holds files; name a new or empty one")
    if problem := blocked_parent(out):  # mkdir would say only "File exists"
        raise HFFolderError(f"--out {out}: {problem}; name another --out")
    # Written whole into a new hidden sibling and renamed onto ``out`` (over an empty folder too): an export
    # stopped partway leaves no folder that loads half (weights without a tokenizer) under the name asked for.
    staging = out.with_name(f".{out.name}{TEMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as error:
        raise HFFolderError(f"--out {out}: cannot create it ({error.strerror or error})") from None
    try:
        with atomic_write(staging / "model.safetensors") as file:
            file.write(save(state, metadata={"format": "pt"}))
        write_text(staging / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
        tokenizer.save(staging / "tokenizer.json")
        tokenizer_config = json.dumps(_tokenizer_config(tokenizer), indent=2) + "\n"
        write_text(staging / "tokenizer_config.json", tokenizer_config)
        os.rename(staging, out)  # fails, changing nothing, if a file appeared in out meanwhile
        fsync_dir(out.parent)
    except OSError as error:
        raise HFFolderError(f"--out {out}: cannot write it ({error.strerror or error})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # this export's own, made above; gone once renamed
    return out


def _special_token_ids(tokenizer: Tokenizer) -> dict[str, int | None]:
    ids = {role: tokenizer.backend.token_to_id(token) for role, token in tokenizer.roles.items()}
    return {f"{role}_token_id": ids.get(f"<{role}>") for role in ("bos", "eos", "pad")}


def _tokenizer_config(tokenizer: Tokenizer) -> dict[str, Any]:
    """What ``AutoTokenizer`` needs beside tokenizer.json: the fast tokenizer class and the special tokens
    (as this tokenizer spells them: ``[CLS]`` for a BERT one; a role it has no token for is left out)."""
    roles = tokenizer.roles
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **{f"{role[1:-1]}_token": token for role, token in roles.items()},
        "model_max_length": 1000000000000000019884624838656,
    }
