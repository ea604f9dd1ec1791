"""Export stage: the model's graphs for onnxruntime and OpenVINO, gated on parity with PyTorch.

    python -m tasks.export --params params/export.yaml --model models/quartznet_tiny/model.pt \
        --out exports/quartznet_tiny --report reports/export.json

What is written and how it is gated is the model's objective's (``asr_core.objectives``): a CTC model
gets ``model.onnx``, OpenVINO IR in fp32 / bf16 / fp16-weight variants and the waveform-input graph;
a transducer three graphs with state in/out and a streaming check. Every file is built in a staging
folder and moved to ``<out>`` only when every gate passes, with ``export.json`` (what each file is,
its sha256, each backend's gate result); a failed gate writes the report and fails the stage.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import tasks.offline  # noqa: F401
from asr_core.io import file_sha256
from tasks.common import load_params, stage_parser, write_report

REDUCED_VARIANTS = ("openvino_bf16", "openvino_fp16w", "openvino_int8")  # int8: transducers
DEFAULTS = {
    "opset": 17,
    "manifest_dir": "data/prepared",
    "split": "test",
    "max_utterances": None,
    "batch_seconds": 120.0,
    "num_workers": 1,
    "threads": 2,
    "fp32_max_abs_diff": 1e-3,
    "reduced_precision": list(REDUCED_VARIANTS),
    "wer_tolerance": 0.005,
    "waveform": True,
}


class ParityError(RuntimeError):
    """A backend failed the parity gate: its exports are not published."""


def _options(section: dict) -> dict:
    unknown = sorted(set(section) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"export: unknown key(s) {unknown}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **section}
    bad = sorted(set(opts["reduced_precision"] or []) - set(REDUCED_VARIANTS))
    if bad:
        raise ValueError(f"export.reduced_precision: unknown variant(s) {bad}; known: {list(REDUCED_VARIANTS)}")
    if not float(opts["fp32_max_abs_diff"]) > 0 or float(opts["wer_tolerance"]) < 0:
        raise ValueError("export.fp32_max_abs_diff must be > 0 and export.wer_tolerance >= 0")
    if not isinstance(opts["waveform"], bool):
        raise ValueError(f"export.waveform must be true or false, got {opts['waveform']!r}")
    return opts


@contextlib.contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """The staging folder ``exports/.<name>.partial``, emptied before and removed after."""
    tmp = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, out_dir: Path, manifest: dict, passed: bool) -> None:
    """Write ``export.json`` into the staging folder; it replaces ``out_dir`` only when every gate passed."""
    (tmp / "export.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if passed:
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)


def run(section: dict, model_path: str | Path, out_dir: str | Path) -> dict:
    """Export, check, and publish ``out_dir`` when every gate passes; the report either way."""
    import torch

    from asr_core.models.artifact import load_model, read_model_file
    from asr_core.objectives import objective
    from asr_core.objectives.report import split_manifest

    opts = _options(section)
    model_path, out_dir = Path(model_path), Path(out_dir)
    if not model_path.is_file():
        raise FileNotFoundError(f"export: model {model_path} not found (run the train stage first)")
    manifest = split_manifest(opts["manifest_dir"], opts["split"], "export.split")
    torch.set_num_threads(int(opts["threads"]))
    kind = read_model_file(model_path)["kind"]
    model, features, vocab = load_model(model_path)
    with staged(out_dir) as tmp:
        parity, doc = objective(kind).export(model, features, vocab, opts, tmp, manifest)
        files = {p.relative_to(tmp).as_posix(): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        passed = all(v["passed"] for v in parity.values())
        doc = {
            "model": str(model_path),
            "model_sha256": file_sha256(model_path),
            "kind": kind,
            "opset": int(opts["opset"]),
            **doc,
            "files": files,
            # which backends passed (tasks.serve picks among them); without timings, so equal exports are equal
            "parity": {name: {k: v for k, v in r.items() if k != "seconds"} for name, r in parity.items()},
        }
        publish(tmp, out_dir, doc, passed)
    return {
        "model": str(model_path),
        "kind": kind,
        "passed": passed,
        "split": opts["split"],
        "utterances": next((v["utterances"] for v in parity.values() if "utterances" in v), 0),
        "wer_torch": next((v["wer_torch"] for v in parity.values() if "wer_torch" in v), None),
        "fp32_max_abs_diff_tolerance": float(opts["fp32_max_abs_diff"]),
        "wer_tolerance": float(opts["wer_tolerance"]),
        "backends": parity,
        "files": files,
    }


def main(argv: list[str] | None = None) -> dict:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model.pt written by the train stage")
    p.add_argument("--out", required=True, help="export folder (exports/<name>)")
    p.add_argument("--report", default="reports/export.json")
    args = p.parse_args(argv)
    section = load_params(args.params, "export")
    from tasks.tracking import stage_run

    out = Path(args.out)
    with stage_run("export", {"export": section}, label=Path(args.model).parent.name if args.model else None) as tr:
        report = run(section, args.model, out)
        write_report(args.report, report)
        keep = ("max_abs_diff", "wer", "wer_change", "transcripts_differ")
        tr.log_metrics(
            {
                "export": {
                    name: {**{k: v for k, v in r.items() if k in keep}, "passed": int(r["passed"])}
                    for name, r in report["backends"].items()
                }
            }
        )
        tr.log_artifact(args.report)
        if not report["passed"]:
            failed = [n for n, r in report["backends"].items() if not r["passed"]]
            raise ParityError(f"export: parity gate failed for {failed} (see {args.report}); nothing published")
        for rel in report["files"]:
            tr.log_artifact(out / rel, artifact_path=str(Path("exports") / Path(rel).parent))
        tr.log_artifact(out / "export.json", artifact_path="exports")
    return report


if __name__ == "__main__":
    main()
