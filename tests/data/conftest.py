"""A stand-in tokenizer for the data tests, so they depend on nothing in lightning_llm.tokenizers."""

import time

import pytest


class ByteTokenizer:
    """ids = UTF-8 bytes + ``offset``; ids below the offset are specials (pad 0, eos 3).

    Counts ``encode_batch`` calls so tests can prove a cache was reused, and can be slowed down so two
    processes building one cache really overlap.
    """

    pad_id = 0
    eos_id = 3

    def __init__(self, offset: int = 7, vocab_size: int = 263, name: str = "bytes-v1", delay: float = 0.0):
        self.offset = offset
        self.vocab_size = vocab_size
        self.name = name
        self.delay = delay
        self.calls = 0

    def encode(self, text: str) -> list[int]:
        return [b + self.offset for b in text.encode()]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        self.calls += 1
        time.sleep(self.delay)
        return [self.encode(text) for text in texts]

    def decode(self, ids) -> str:
        return bytes(int(i) - self.offset for i in ids if i >= self.offset).decode()

    def fingerprint(self) -> str:
        return f"{self.name}-{self.offset}-{self.vocab_size}"


@pytest.fixture(scope="session")
def make_tokenizer() -> type[ByteTokenizer]:
    return ByteTokenizer


@pytest.fixture
def tokenizer() -> ByteTokenizer:
    return ByteTokenizer()
