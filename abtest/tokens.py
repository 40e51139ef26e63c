"""Offline token estimates that track OpenAI's ``cl100k``/``o200k`` tokenizers on English text.

No tokenizer files are available at run time (nothing may be downloaded), so token counts for
``usage`` figures, costs and the chunker come from a cheap heuristic instead of ``tiktoken``.

Heuristic (documented so numbers can be reasoned about):

1. Split the text with a simplified version of cl100k's own pre-tokenization regex: a run of
   letters together with at most one leading space or punctuation character (``" quick"``),
   the contractions ``'s 't 're 've 'm 'll 'd``, digit groups of at most three, runs of other
   punctuation, newline runs and runs of extra spaces.
2. Charge each piece what BPE typically charges for it:
   - ASCII word: 1 token up to 10 letters, +1 per further 10 letters (``"summarization"`` -> 2);
   - non-ASCII letters (accents, CJK, ...): about 1 token per non-ASCII character;
   - digit group (<= 3 digits): 1 token;
   - punctuation run: 1 token per 2 characters (``","`` -> 1, ``"..."`` -> 2);
   - newline run or extra-space run: 1 token.

On ordinary English prose this gives about 1.2-1.35 tokens per word (OpenAI's rule of thumb is
~0.75 words per token) and is exact on short sentences such as
``"The quick brown fox jumps over the lazy dog."`` (10 tokens). ``""`` costs 0 tokens; any
non-blank text costs at least 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "REPLY_PRIMING_TOKENS",
    "TOKENS_PER_MESSAGE",
    "estimate_message_tokens",
    "estimate_tokens",
    "message_text",
]

# OpenAI's chat format wraps every message in ~3 special tokens and primes the reply with 3 more
# (see the "counting tokens for chat completions" recipe in the OpenAI cookbook).
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3

_PIECE = re.compile(
    r"""
      (?P<contraction>'(?:[sdmt]|ll|ve|re)\b)
    | (?P<word>[^\r\n\w]?[^\W\d_]+)
    | (?P<digits>\d{1,3})
    | (?P<punct>\ ?(?:[^\s\w]|_)+)
    | (?P<newline>\s*[\r\n]+)
    | (?P<space>\s{2,})
    """,
    re.VERBOSE | re.IGNORECASE,
)


def _word_cost(piece: str) -> int:
    letters = piece.lstrip(" ") if piece[:1] == " " else piece
    non_ascii = sum(1 for ch in letters if not ch.isascii())
    ascii_letters = sum(1 for ch in letters if ch.isascii() and ch.isalpha())
    leading_punct = 1 if letters[:1] and not letters[:1].isalpha() and letters[:1] != " " else 0
    ascii_cost = 1 + (ascii_letters - 1) // 10 if ascii_letters else 0
    return max(1, ascii_cost + non_ascii + leading_punct)


def estimate_tokens(text: str) -> int:
    """Estimated number of cl100k tokens in ``text`` (see the module docstring for the rules)."""
    if not text:
        return 0
    total = 0
    for match in _PIECE.finditer(text):
        kind = match.lastgroup
        piece = match.group()
        if kind == "word":
            total += _word_cost(piece)
        elif kind == "punct":
            total += (len(piece.strip()) + 1) // 2
        else:  # contraction, digit group, newline run, extra-space run
            total += 1
    if total == 0 and text.strip():
        total = 1
    return total


def message_text(content: Any) -> str:
    """Plain text of a chat message ``content`` (a string, ``None`` or a list of text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
            parts.append(part["text"])
    return "\n".join(parts)


def estimate_message_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Estimated ``prompt_tokens`` of a chat request, counted the way OpenAI bills it.

    Every message costs ``TOKENS_PER_MESSAGE`` plus its role, its content and (if present) its
    name; the reply priming adds ``REPLY_PRIMING_TOKENS``.
    """
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE
        total += estimate_tokens(str(message.get("role") or ""))
        total += estimate_tokens(message_text(message.get("content")))
        name = message.get("name")
        if name:
            total += estimate_tokens(str(name)) + 1
    return total
