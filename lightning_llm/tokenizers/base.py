"""The tokenizer every plugin returns: a thin, typed wrapper around a Hugging Face ``tokenizers.Tokenizer``.

The wrapper fixes the conventions the rest of the framework relies on:

- Every tokenizer knows the same special tokens (``SPECIAL_TOKENS``). Trained ones hold them at ids 0..6 in
  that order; a loaded file may hold them elsewhere, so the id properties always ask the backend. A file
  from another project may spell a role its own way (BERT's ``[CLS]``, GPT-2's ``<|endoftext|>``): a special
  token with a conventional spelling (``CONVENTIONAL_SPELLINGS``) then plays the role, so a pretrained
  model keeps the embeddings it learned for it, and only roles with no such token are added. A pretrained
  model's tokenizer may be loaded with only the roles its use needs (``roles=``), so its vocabulary, and the
  model's rows, stay its own: <pad> is then played by <eos> where it has no token, and a role left without
  a token refuses to give an id (``MissingSpecialTokenError``), naming the role.
- ``encode`` never adds special tokens and never turns text into them: a document that happens to contain the
  string ``"<eos>"`` is encoded as ordinary text. Special ids are inserted by id, by the data pipeline.
- ``decode`` drops special tokens, so decoding a padded or packed sequence gives back readable text.
- ``save`` writes one ``tokenizer.json`` atomically, readable by any Hugging Face ``tokenizers`` version.
- Texts longer than ``max_piece_chars`` are trained on and encoded in pieces (see
  ``lightning_llm.tokenizers.pieces``), so one huge line neither exhausts memory nor runs on one core.
- ``vocab_size`` parameters are range-checked when a plugin is built (``check_vocab_size``).

Subclasses supply the training recipe by implementing ``_fit(texts) -> tokenizers.Tokenizer``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, ClassVar

from tokenizers import Tokenizer as HFTokenizer

from lightning_llm.atomic import write_text
from lightning_llm.tokenizers.pieces import (
    MAX_BATCH_CHARS,
    MAX_PIECE_CHARS,
    piece_batches,
    pieces_of,
    text_pieces,
)

log = logging.getLogger("lightning_llm.tokenizers")

__all__ = [
    "MAX_VOCAB_SIZE",
    "CONVENTIONAL_SPELLINGS",
    "SPECIAL_TOKENS",
    "MissingSpecialTokenError",
    "Tokenizer",
    "TokenizerFileError",
    "TokenizerNotTrainedError",
    "check_vocab_size",
    "read_tokenizer_file",
]

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<unk>", "<bos>", "<eos>", "<mask>", "<cls>", "<sep>")
# Other projects' spellings of each role, tried in order when a loaded file has no token of ours for it; only
# tokens the file itself marks special count (BERT's WordPiece, GPT-2's and RoBERTa's byte-level BPE).
CONVENTIONAL_SPELLINGS: dict[str, tuple[str, ...]] = {
    "<pad>": ("[PAD]",),
    "<unk>": ("[UNK]",),
    # BERT's [CLS] starts and [SEP] ends every sequence; T5 and Marian start their decoders from <pad>.
    "<bos>": ("<s>", "<|endoftext|>", "[CLS]", "<pad>"),
    "<eos>": ("</s>", "<|endoftext|>", "[SEP]"),
    "<mask>": ("[MASK]",),
    "<cls>": ("[CLS]",),
    "<sep>": ("[SEP]",),
}
TOKENIZER_FILE = "tokenizer.json"
# 8x the largest vocabularies in use (~256k, Gemma's), and still within the token cache's uint32 ids. Beyond
# it no corpus trainable here fills the vocabulary, the embedding table alone outgrows a GPU, and the Rust
# trainers allocate for the requested size up front: 10**12 aborts the process with an allocation panic.
MAX_VOCAB_SIZE = 2**21


class TokenizerNotTrainedError(RuntimeError):
    """A tokenizer was used before it was trained or loaded."""


class TokenizerFileError(ValueError):
    """A file that exists but is not a Hugging Face ``tokenizer.json``."""


class MissingSpecialTokenError(ValueError):
    """A special role asked of a tokenizer loaded without a token for it (``roles=``)."""


class Tokenizer:
    """A trained (or trainable) tokenizer backed by a Hugging Face ``tokenizers.Tokenizer``.

    ``backend`` is the Hugging Face object, ``None`` until ``train`` or ``load`` has run.
    """

    name: ClassVar[str] = "file"  # the registered plugin name; "file" for one built by ``from_file``
    max_piece_chars: ClassVar[int] = MAX_PIECE_CHARS  # longest text the backend gets in one piece
    max_batch_chars: ClassVar[int] = MAX_BATCH_CHARS  # most text the backend gets in one encode_batch call

    def __init__(self, **params: Any) -> None:
        if isinstance(params.get("vocab_size"), int):  # any plugin's; its own minimum is its to check
            check_vocab_size(self.name, params["vocab_size"])
        self.params: dict[str, Any] = params  # the plugin's parameters, recorded for ``spec()``
        self._backend: HFTokenizer | None = None
        self._special_ids: dict[str, int] = {}
        self._special_tokens: dict[str, str] = {}
        self._added: list[str] = []
        self._source = ""
        self._vocab_size = 0

    # ----------------------------------------------------------------------------------------- lifecycle
    def train(self, texts: Iterable[str]) -> None:
        """Train a fresh backend on ``texts`` (an iterable of documents), replacing any previous one.

        Long texts reach the trainer in pieces: the words it counts are the same (see ``pieces``), and a
        30 MB line no longer becomes one 30 MB input.
        """
        self._attach(self._fit(pieces_of(texts, self.max_piece_chars)), source=f"{self.name} training")

    def _fit(self, texts: Iterable[str]) -> HFTokenizer:
        """Build and train a backend; each trainable plugin implements its own recipe."""
        raise NotImplementedError(
            f"{type(self).__name__} has no training recipe; build a trainable tokenizer plugin "
            "(byte_bpe, bpe, wordpiece, unigram, char) or load a trained one"
        )

    def load(self, path: str | Path, roles: Collection[str] | None = None) -> Tokenizer:
        """Replace the backend with the one saved at ``path``; returns ``self`` for chaining. ``roles``: the
        special roles to add where the file lacks them (None: all; see ``from_backend``)."""
        path = Path(path)
        self._attach(read_tokenizer_file(path), source=str(path), roles=roles)
        return self

    @staticmethod
    def from_file(path: str | Path, roles: Collection[str] | None = None) -> Tokenizer:
        """A trained tokenizer read from a ``tokenizer.json`` (ours, or from any Hugging Face version)."""
        return Tokenizer().load(path, roles=roles)

    @staticmethod
    def from_backend(backend: HFTokenizer, source: str, roles: Collection[str] | None = None) -> Tokenizer:
        """A trained tokenizer wrapping ``backend`` (a ``tokenizers.Tokenizer``), the framework's special
        tokens made special; ``source`` names it in warnings. Of the roles it has no token for, ``roles``
        (None: all of them) are added as new tokens; the others add nothing (<pad> is then played by
        <eos>, as for GPT-2), so the vocabulary stays the backend's."""
        tokenizer = Tokenizer()
        tokenizer._attach(backend, source=source, roles=roles)
        return tokenizer

    def save(self, path: str | Path) -> Path:
        """Write the backend as one ``tokenizer.json`` at ``path`` (a file path), atomically."""
        backend = self._require_backend()
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(
                f"{path} is a directory; save() takes the file to write, e.g. {path / TOKENIZER_FILE}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, backend.to_str(pretty=True))
        return path

    # -------------------------------------------------------------------------------------- inspection
    @property
    def backend(self) -> HFTokenizer | None:
        return self._backend

    @property
    def is_trained(self) -> bool:
        return self._backend is not None

    @property
    def vocab_size(self) -> int:
        """One more than the largest id, so an embedding table of this size covers every token."""
        self._require_backend()
        return self._vocab_size

    def fingerprint(self) -> str:
        """SHA-256 of the backend's JSON: equal fingerprints mean identical tokenization."""
        return hashlib.sha256(self._require_backend().to_str().encode("utf-8")).hexdigest()

    def spec(self) -> dict[str, Any]:
        """The plugin's name and parameters: what determines the result of training (a cache key)."""
        return {"type": self.name, **self.params}

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        state = f"{self._vocab_size} tokens" if self.is_trained else "untrained"
        return f"{type(self).__name__}({params}) [{state}]"

    # ------------------------------------------------------------------------------------- special ids
    def special_token(self, role: str) -> str:
        """The token that plays ``role`` (one of ``SPECIAL_TOKENS``), e.g. ``"[CLS]"`` for ``"<cls>"`` in
        a BERT tokenizer."""
        self._require_backend()
        self._require_role(role)
        return self._special_tokens[role]

    @property
    def roles(self) -> dict[str, str]:
        """Each special role that has a token -> that token (all of them unless loaded with ``roles=``)."""
        self._require_backend()
        return dict(self._special_tokens)

    @property
    def added_tokens(self) -> list[str]:
        """The special tokens added when loaded, absent from the file (they have no trained rows)."""
        self._require_backend()
        return list(self._added)

    @property
    def pad_id(self) -> int:
        return self._special_id("<pad>")

    @property
    def unk_id(self) -> int:
        return self._special_id("<unk>")

    @property
    def bos_id(self) -> int:
        return self._special_id("<bos>")

    @property
    def eos_id(self) -> int:
        return self._special_id("<eos>")

    @property
    def mask_id(self) -> int:
        return self._special_id("<mask>")

    @property
    def cls_id(self) -> int:
        return self._special_id("<cls>")

    @property
    def sep_id(self) -> int:
        return self._special_id("<sep>")

    # ---------------------------------------------------------------------------------------- encoding
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, with no special tokens added."""
        if len(text) > self.max_piece_chars:
            return self.encode_batch([text])[0]
        backend = self._require_backend()
        try:
            return backend.encode(text, add_special_tokens=False).ids
        except BaseException as error:
            _raise_if_panic(error, self._source)
            raise

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, encoded in parallel by the backend.

        The backend gets the texts in pieces of at most ``max_piece_chars`` characters, cut at whitespace
        (``lightning_llm.tokenizers.pieces`` says when that changes tokens), ``max_batch_chars`` at a time.
        """
        backend = self._require_backend()
        texts = list(texts)
        ids: list[list[int]] = [[] for _ in texts]
        for batch in piece_batches(texts, self.max_piece_chars, self.max_batch_chars):
            # the _fast variant computes no character offsets, which ids do not need
            try:
                encodings = backend.encode_batch_fast([p.text for p in batch], add_special_tokens=False)
            except BaseException as error:
                _raise_if_panic(error, self._source)
                raise
            for piece, encoding in zip(batch, encodings, strict=True):
                ids[piece.index].extend(encoding.ids)
        return ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` and each token's (start, end) character span in it: what maps a predicted
        token span back to the text (extractive question answering). Pieces as ``encode_batch`` cuts them."""
        backend = self._require_backend()
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        begin = 0
        for piece in text_pieces(text, self.max_piece_chars):
            try:
                encoding = backend.encode(piece, add_special_tokens=False)
            except BaseException as error:
                _raise_if_panic(error, self._source)
                raise
            ids.extend(encoding.ids)
            offsets.extend((begin + start, begin + end) for start, end in encoding.offsets)
            begin += len(piece)
        return ids, offsets

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (a list, array or tensor of ints), with special tokens dropped."""
        return self._require_backend().decode([int(i) for i in ids], skip_special_tokens=True)

    # ---------------------------------------------------------------------------------------- internals
    def _attach(self, backend: HFTokenizer, source: str, roles: Collection[str] | None = None) -> None:
        _make_deterministic(backend, source)
        tokens, self._added = _register_special_tokens(
            backend, source, SPECIAL_TOKENS if roles is None else roles
        )
        # Text is always text: a literal "<eos>" inside a document must not become the eos id.
        backend.encode_special_tokens = True
        self._backend = backend
        self._source = source
        self._special_tokens = tokens
        self._special_ids = {role: backend.token_to_id(token) for role, token in tokens.items()}
        self._vocab_size = max(backend.get_vocab(with_added_tokens=True).values()) + 1
        if self._vocab_size > MAX_VOCAB_SIZE:  # a crafted file: the embedding would have that many rows
            raise TokenizerFileError(
                f"{source}: its largest token id is {self._vocab_size - 1}, so a model would need "
                f"{self._vocab_size} embedding rows; at most {MAX_VOCAB_SIZE} are supported"
            )

    def _require_backend(self) -> HFTokenizer:
        if self._backend is None:
            raise TokenizerNotTrainedError(
                f"{self!r} is not trained yet; call train(texts) or load(path) first, "
                "or use lightning_llm.tokenizers.fit_or_load"
            )
        return self._backend

    def _special_id(self, token: str) -> int:
        self._require_backend()
        self._require_role(token)
        return self._special_ids[token]

    def _require_role(self, role: str) -> None:
        if role in SPECIAL_TOKENS and role not in self._special_tokens:
            raise MissingSpecialTokenError(
                f"the tokenizer of {self._source} has no {role} token (loaded with the roles its model's "
                "objective uses, so that the vocabulary stays its own); this use needs one"
            )


def check_vocab_size(plugin: str, vocab_size: int, minimum: int = 0, why: str = "") -> None:
    """Refuse a ``vocab_size`` outside ``[minimum, MAX_VOCAB_SIZE]``; called in a plugin's constructor, so a
    bad value fails before any data is read. ``why`` says what the minimum makes room for."""
    if not minimum <= vocab_size <= MAX_VOCAB_SIZE:
        reason = f" ({why})" if why else ""
        raise ValueError(
            f"tokenizer.vocab_size={vocab_size} is out of range for tokenizer '{plugin}': use at least "
            f"{minimum}{reason} and at most {MAX_VOCAB_SIZE}"
        )


def read_tokenizer_file(path: Path) -> HFTokenizer:
    """The backend saved at ``path`` (a ``tokenizer.json``, or a folder holding one)."""
    path = path.expanduser()
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"tokenizer file not found: {path} (expected a tokenizer.json written by Tokenizer.save "
            "or by Hugging Face tokenizers)"
        )
    try:
        return HFTokenizer.from_file(str(path))
    except Exception as error:  # the Rust parser raises a bare Exception for any malformed file
        raise TokenizerFileError(f"{path} is not a valid Hugging Face tokenizer.json: {error}") from None


def _raise_if_panic(error: BaseException, source: str | None) -> None:
    """A crafted tokenizer.json can make the Rust library panic (a regex backtracking past its limit); pyo3
    raises that as ``PanicException``, a BaseException, matched by name so that nothing else is caught."""
    if type(error).__name__ == "PanicException":
        raise TokenizerFileError(
            f"{source or 'the tokenizer'}: the tokenizers library failed on a text ({str(error)[:200]}); "
            "its pre-tokenizer or normalizer cannot handle this data"
        ) from None


def _make_deterministic(backend: HFTokenizer, source: str) -> None:
    """Turn off what a tokenizer.json may switch on for another use: truncation (it would cut every document
    of the corpus), padding (pad ids inside the training data) and BPE dropout (different ids for the same
    text on every call, so no cache or generation could be reproduced). Said once each."""
    changed = []
    if backend.truncation is not None:
        backend.no_truncation()
        changed.append("truncation")
    if backend.padding is not None:
        backend.no_padding()
        changed.append("padding")
    if getattr(backend.model, "dropout", None):
        backend.model.dropout = None
        changed.append("BPE dropout")
    if changed:
        log.warning(
            "%s: turned off its %s (lightning_llm tokenizes whole texts, the same way every time)",
            source,
            " and ".join(changed),
        )


def _register_special_tokens(
    backend: HFTokenizer, source: str, needed: Collection[str]
) -> tuple[dict[str, str], list[str]]:
    """``(roles, added)``: each role of ``SPECIAL_TOKENS`` -> the special token of ``backend`` that plays it:
    ours, else one spelled conventionally, else (a ``needed`` role) ours added, or, already in the
    vocabulary, made special; <pad> not needed is played by <eos>; any other role not needed and absent has
    no token. ``added``: the tokens added to the vocabulary."""
    special = {token.content for token in backend.get_added_tokens_decoder().values() if token.special}
    spelled = {role: _spelling(role, backend, special) for role in SPECIAL_TOKENS}
    roles = {
        role: token
        for role, token in spelled.items()
        if role in needed or token in special or backend.token_to_id(token) is not None
    }
    if "<pad>" not in roles and "<eos>" in roles:
        roles["<pad>"] = roles["<eos>"]  # padding is never scored: GPT-2's users pad with <|endoftext|> too
    unregistered = list(dict.fromkeys(token for token in roles.values() if token not in special))
    if not unregistered:
        return roles, []
    absent = [token for token in unregistered if backend.token_to_id(token) is None]
    # Tokens already in the vocabulary keep their ids and merely become special (skipped by decode).
    taken = {index: token for token, index in backend.get_vocab(with_added_tokens=True).items()}
    backend.add_special_tokens(unregistered)
    for token in absent:  # the library numbers a new token by the vocabulary's size: a gap in ids collides
        if (index := backend.token_to_id(token)) in taken:
            raise TokenizerFileError(
                f"{source}: its token ids leave gaps, so {token}, which it lacks and needs, would take id "
                f"{index}, already {taken[index]!r}'s; give a tokenizer.json whose ids run 0..N-1, or one "
                f"with a {token} token"
            )
    if absent:
        ids = ", ".join(f"{token}={backend.token_to_id(token)}" for token in absent)
        log.warning(
            "%s lacks the special tokens %s; added them as new tokens (%s), so the special ids differ from "
            "the usual 0..6",
            source,
            absent,
            ids,
        )
    return roles, absent


def _spelling(role: str, backend: HFTokenizer, special: set[str]) -> str:
    """The token that plays ``role``: ours when the backend has it, else a conventional special one."""
    if backend.token_to_id(role) is not None:
        return role
    return next((token for token in CONVENTIONAL_SPELLINGS[role] if token in special), role)
