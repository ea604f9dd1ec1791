"""Import a fairseq wav2vec 2.0 checkpoint (no fairseq needed) as this toolkit's model file.

    python -m tasks.wav2vec2_import wav2vec_small.pt models/w2v_base_pre/model.pt
    python -m tasks.wav2vec2_import wav2vec_small_960h.pt models/w2v_base_960h/model.pt --dict dict.ltr.txt

A pre-trained checkpoint becomes a pre-training ``model.pt`` (``model.init_from`` of the fine-tuning
recipe; fairseq files are also accepted there directly). A fine-tuned one, with its letter
dictionary, becomes a CTC ``model.pt`` that ``tasks.evaluate`` / ``tasks.transcribe`` / ``tasks.export``
read (letters -> space, a-z, apostrophe; blank last); without ``--dict``, the encoder alone is written
as a pre-training-format file for further fine-tuning. The waveform normalisation is fairseq's task
``normalize`` flag (``--normalize`` / ``--no-normalize`` to override).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tasks.offline  # noqa: F401


def _task_normalize(path: Path) -> bool | None:
    from asr_core.models.wav2vec2.fairseq import _as_dict, read_checkpoint

    ckpt = read_checkpoint(path)
    if ckpt.get("cfg") is not None:
        task = _as_dict(ckpt["cfg"]).get("task") or {}
        return _as_dict(task).get("normalize")
    if ckpt.get("args") is not None:
        return _as_dict(ckpt["args"]).get("normalize")
    return None


def run(
    checkpoint: str | Path, out: str | Path, dictionary: str | Path | None = None, normalize: bool | None = None
) -> dict:
    import torch

    from asr_core.io.atomic import atomic_path
    from asr_core.models.artifact import save_model
    from asr_core.models.wav2vec2 import WaveformConfig
    from asr_core.models.wav2vec2.fairseq import import_fairseq
    from asr_core.text import CharVocab
    from asr_core.train.wav2vec2_recipe import PRETRAIN_FORMAT

    checkpoint, out = Path(checkpoint), Path(out)
    model, cfg, finetuned = import_fairseq(checkpoint, dictionary=dictionary)
    if normalize is None:
        normalize = bool(_task_normalize(checkpoint))
    features = WaveformConfig(normalize=normalize)
    out.parent.mkdir(parents=True, exist_ok=True)
    if finetuned and dictionary is not None:
        vocab = CharVocab()
        save_model(
            out,
            kind="ctc",
            frontend="waveform",
            family="wav2vec2",
            model_config=cfg.to_dict(),
            num_outputs=vocab.num_outputs,
            features=features.to_dict(),
            vocab=vocab.to_dict(),
            state_dict=model.state_dict(),
            step=0,
            metrics={"imported_from": str(checkpoint)},
        )
        kind = "ctc"
    else:
        enc = model if finetuned else model.encoder
        state = {f"encoder.{k}": v for k, v in enc.state_dict().items()} if finetuned else model.state_dict()
        obj = {
            "format": PRETRAIN_FORMAT,
            "version": 1,
            "family": "wav2vec2_pretrain",
            "model_config": cfg.to_dict(),
            "features": features.to_dict(),
            "model": {k: v.detach().cpu().clone() for k, v in state.items()},
            "step": 0,
            "metrics": {"imported_from": str(checkpoint)},
        }
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
        kind = "encoder" if finetuned else "pretraining"
    n = sum(p.numel() for p in model.parameters())
    return {
        "out": str(out),
        "kind": kind,
        "parameters": n,
        "num_layers": cfg.num_layers,
        "embed_dim": cfg.embed_dim,
        "normalize": normalize,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="fairseq wav2vec 2.0 checkpoint (.pt)")
    p.add_argument("out", help="model file to write")
    p.add_argument("--dict", dest="dictionary", default=None, help="fairseq dict.ltr.txt of a fine-tuned model")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--normalize", dest="normalize", action="store_true", default=None)
    g.add_argument("--no-normalize", dest="normalize", action="store_false")
    args = p.parse_args(argv)
    result = run(args.checkpoint, args.out, args.dictionary, args.normalize)
    print(
        f"wav2vec2_import: {result['kind']} model, {result['parameters'] / 1e6:.2f} M parameters, "
        f"{result['num_layers']} x {result['embed_dim']}, normalize={result['normalize']} -> {result['out']}"
    )
    return result


if __name__ == "__main__":
    main()
