"""The one text normaliser: maps any transcript onto the model alphabet.

Alphabet (REFERENCE.md): space, a-z and apostrophe. The rules, in order:

1. Unicode NFKD, then drop combining marks (``café`` -> ``cafe``); curly
   apostrophes and backticks become ``'``.
2. Lower-case.
3. ``&`` -> `` and ``; hyphens, underscores, slashes and other word-joining
   punctuation become spaces (``well-known`` -> ``well known``).
4. Sentence punctuation (``. , ; : ! ? " ( ) [ ] { }``) is removed.
5. Runs of whitespace collapse to one space; leading/trailing space is stripped;
   apostrophes at word edges (quotes) are removed, inner ones (``don't``) kept.

Characters that survive and are still outside the alphabet (digits, other
scripts) are left in place so that the prepare stage can reject the utterance
with reason ``out_of_alphabet`` instead of silently deleting words.
"""

from __future__ import annotations

import re
import unicodedata

ALPHABET: str = " abcdefghijklmnopqrstuvwxyz'"
_ALLOWED = frozenset(ALPHABET)

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_TO_SPACE = re.compile(r"[\-\u2010-\u2015_/\\|~+=*#@<>\t\r\n]+")
_DROP = re.compile(r"[.,;:!?\"()\[\]{}\u201c\u201d\u00ab\u00bb\u2026]")
_EDGE_APOS = re.compile(r"(^|\s)'+|'+(?=\s|$)")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Return ``text`` mapped onto the model alphabet as far as rules allow."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.translate(_APOSTROPHES).lower()
    text = text.replace("&", " and ")
    text = _TO_SPACE.sub(" ", text)
    text = _DROP.sub("", text)
    text = _SPACES.sub(" ", text).strip()
    text = _EDGE_APOS.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip()


def out_of_alphabet(text: str) -> str:
    """The sorted set of characters of ``text`` outside the alphabet ('' if none)."""
    return "".join(sorted(set(text) - _ALLOWED))
