"""Convert QuartzNet models between NeMo ``.nemo`` archives and this toolkit's ``model.pt``.

Usage::

    python -m tasks.convert_nemo import model.nemo out/model.pt [--no-check-features]
    python -m tasks.convert_nemo export model.pt out/model.nemo [--gzip]

Import checks that the archive is a character QuartzNet this toolkit builds exactly (block list,
feature settings, vocabulary, every weight) and refuses anything else with the offending field.
Export writes NeMo's ``model_config.yaml`` and ``model_weights.ckpt`` (with the preprocessor's
mel filterbank and window) so that NeMo's ``restore_from`` loads it strictly. See
``asr_core/models/nemo.py`` for the mapping.
"""

from __future__ import annotations

import argparse
import sys

import tasks.offline  # noqa: F401
from asr_core.data.download.archive import ArchiveError
from asr_core.models.nemo import NemoFormatError, export_nemo, import_nemo
from tasks.common import fail


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help=".nemo -> model.pt")
    imp.add_argument("src", help="QuartzNet .nemo archive")
    imp.add_argument("dst", help="model.pt to write")
    imp.add_argument(
        "--no-check-features",
        action="store_true",
        help="import even if the archive's mel filterbank/window differ from its preprocessor config",
    )
    exp = sub.add_parser("export", help="model.pt -> .nemo")
    exp.add_argument("src", help="model.pt of a QuartzNet")
    exp.add_argument("dst", help=".nemo archive to write")
    exp.add_argument("--gzip", action="store_true", help="gzip the tar (for old NeMo releases)")
    args = p.parse_args(argv)

    try:
        if args.command == "import":
            done = import_nemo(args.src, args.dst, check_features=not args.no_check_features)
        else:
            done = export_nemo(args.src, args.dst, compress=args.gzip)
    except (NemoFormatError, ArchiveError, FileNotFoundError) as e:
        fail(str(e))
    for note in done.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{args.command}: {args.src} -> {done.path} (QuartzNet, {done.num_params:,} parameters)")
    return {
        "command": args.command,
        "src": str(args.src),
        "dst": str(done.path),
        "num_params": done.num_params,
        "model_config": done.model_config,
        "notes": list(done.notes),
    }


if __name__ == "__main__":
    main()
