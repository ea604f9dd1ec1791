"""Print the stage reports (``reports/*.json``) compactly: one line per stage, scalars only.

``dvc metrics show`` prints the same numbers as one very wide table; this is the
short view ``make run`` ends with. Usage: ``python -m tasks.summary [reports]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ("download", "prepare", "tokenizer", "lm", "train", "evaluate", "export", "benchmark")


def _scalars(d: dict, prefix: str = "") -> list[str]:
    """``k=v`` for scalars; one level of nested dicts (per-split metrics) as ``split.k=v``."""
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and not prefix:
            out += _scalars(v, f"{k}.")
        elif isinstance(v, float):
            out.append(f"{prefix}{k}={v:.4g}")
        elif isinstance(v, (int, str)) and not isinstance(v, bool):
            out.append(f"{prefix}{k}={v}")
    return out


def main(argv: list[str] | None = None) -> None:
    folder = Path((argv or sys.argv[1:] or ["reports"])[0])
    files = sorted(folder.glob("*.json"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem))
    for p in files:
        report = json.loads(p.read_text(encoding="utf-8"))
        print(f"{p.stem:>10}: " + ", ".join(_scalars(report)))


if __name__ == "__main__":
    main()
