"""The one strict ``from_dict`` check shared by the config dataclasses.

Params files are hand-edited YAML: a misspelt key must fail loudly, naming itself and
the keys that exist, instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def reject_unknown(cls: type, d: Mapping[str, Any], what: str) -> None:
    """Raise ``ValueError`` if ``d`` has keys that are not fields of the dataclass ``cls``."""
    known = sorted(f.name for f in fields(cls))
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}; known: {known}")
