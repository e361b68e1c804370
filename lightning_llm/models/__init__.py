"""Models and the blocks they are built from. Importing this package registers the model plugins."""

from lightning_llm.models.blocks import (
    MLP,
    Attention,
    Block,
    RotaryEmbedding,
    SinusoidalPositions,
    apply_rotary,
    init_gpt2_,
    make_norm,
)
from lightning_llm.models.encoder import Encoder, EncoderConfig
from lightning_llm.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from lightning_llm.models.gpt import GPT, GPTConfig

__all__ = [
    "GPT",
    "Encoder",
    "EncoderConfig",
    "EncoderDecoder",
    "EncoderDecoderConfig",
    "MLP",
    "Attention",
    "Block",
    "GPTConfig",
    "RotaryEmbedding",
    "SinusoidalPositions",
    "apply_rotary",
    "init_gpt2_",
    "make_norm",
]
