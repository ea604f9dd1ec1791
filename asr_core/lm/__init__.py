"""Word n-gram language models for CTC beam search.

``counts``: n-gram counting over sentences; ``kneser_ney``: interpolated modified
Kneser-Ney estimation (Chen & Goodman 1998, the method of KenLM's ``lmplz``);
``arpa``: the standard ARPA text format (write, read, back-off scoring, perplexity);
``lexicon``: the word -> character spelling file the flashlight decoder reads;
``files``: bringing an existing ARPA / KenLM binary file in.
"""

from asr_core.lm.arpa import ArpaModel, read_arpa, read_arpa_unigrams, write_arpa
from asr_core.lm.counts import BOS, EOS, UNK, NgramCounts, count_ngrams
from asr_core.lm.files import find_lm, install_lm, lm_kind
from asr_core.lm.kneser_ney import estimate_kneser_ney
from asr_core.lm.lexicon import build_lexicon, read_lexicon, write_lexicon

__all__ = [
    "BOS",
    "EOS",
    "UNK",
    "ArpaModel",
    "NgramCounts",
    "build_lexicon",
    "count_ngrams",
    "estimate_kneser_ney",
    "find_lm",
    "install_lm",
    "lm_kind",
    "read_arpa",
    "read_arpa_unigrams",
    "read_lexicon",
    "write_arpa",
    "write_lexicon",
]
