"""Benchmark CTC beam search with the n-gram LM: WER greedy vs beam+LM, and decoding speed.

    python bench/bench_beam.py --model models/quartznet_tiny/model.pt --manifest-dir data/prepared \\
        --lm-dir data/lm --out bench/results/beam.json

1. WER: the evaluate stage's own code (``tasks.evaluate.run`` with ``evaluate.lm``):
   the LM weight x word insertion score grid is searched on the first
   ``--tune-utterances`` of the dev split, then greedy and beam+LM decode the whole
   ``--split`` (default test_unseen_voice). ``--lm-dir`` is the lm stage's output; if
   it is missing, the LM is built first from the train transcripts (``tasks.lm.run``).
2. Speed, on ``--threads`` CPU threads (2 by default, like the project machine):
   - network: a QuartzNet 15x5 (random weights: only its time matters here), eager
     fp32, one utterance at a time on ``--speed-utterances`` utterances of ``--split``;
     CPU seconds per audio second (process CPU time, so other jobs skew it less).
   - beam search, width ``--beam-size``, on the same utterances: (a) the trained
     model's log-probs (peaky, like any trained CTC model: the realistic case);
     (b) the random 15x5's log-probs (nearly flat: a worst case that keeps the beam full).
   Decoding runs in one thread; the 15x5 and the trained model both emit 50 frames a second.
Other jobs on the machine skew wall times: the load average is recorded.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr_core.io import atomic_write_json


def wer_figures(args, lm_dir: Path) -> dict:
    from tasks import evaluate as evaluate_task

    section = {
        "model": args.model,
        "manifest_dir": args.manifest_dir,
        "splits": [args.split],
        "num_workers": 1,
        "lm": {
            "dir": str(lm_dir),
            "beam_size": args.beam_size,
            "tune_split": "dev",
            "tune_utterances": args.tune_utterances,
            "lm_weights": args.lm_weights,
            "word_scores": args.word_scores,
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = evaluate_task.run(section, Path(tmp))
        seconds = time.perf_counter() - t0
    split = report[args.split]
    return {
        "split": args.split,
        "utterances": split["utterances"],
        "greedy_wer": split["wer"],
        "greedy_cer": split["cer"],
        "beam_wer": split["beam"]["wer"],
        "beam_cer": split["beam"]["cer"],
        "tuning": report["beam"],
        "evaluate_seconds": round(seconds, 1),
    }


def speed_figures(args, lm_dir: Path, weights: dict) -> dict:
    from asr_core.decoding import transcribe_manifest
    from asr_core.decoding.beam import BeamConfig, LexiconBeamDecoder
    from asr_core.lm import find_lm
    from asr_core.models import build_model
    from asr_core.models.artifact import load_model

    model, features, vocab = load_model(args.model)
    manifest = Path(args.manifest_dir) / f"{args.split}.jsonl"
    trained, _ = transcribe_manifest(
        model,
        features,
        vocab,
        manifest,
        batch_seconds=60.0,
        num_workers=1,
        max_utterances=args.speed_utterances,
        keep_log_probs=True,
    )
    audio = sum(t.duration for t in trained)

    from asr_core.data.audio import load_audio, to_mono
    from asr_core.features import FilterbankFeatures

    fb = FilterbankFeatures(features.cfg).eval()
    feats = []
    root = manifest.parent
    from asr_core.io import read_jsonl

    rows = {r["utt_id"]: r for r in read_jsonl(manifest)}
    for t in trained:
        x, _ = load_audio(root / rows[t.utt_id]["audio_filepath"])
        wave = torch.from_numpy(to_mono(x).astype("float32"))[None]
        feats.append(fb(wave, torch.tensor([wave.size(1)])))
    torch.manual_seed(0)
    qn = build_model("quartznet", "15x5", vocab.num_outputs).eval()
    random_lp = []
    with torch.inference_mode():
        qn(*feats[0])  # warm-up
        c0, w0 = time.process_time(), time.perf_counter()
        for f, n in feats:
            lp, lens = qn(f, n)
            random_lp.append(lp[0, : int(lens[0])].float())
        net_cpu, net_wall = time.process_time() - c0, time.perf_counter() - w0

    decoder = LexiconBeamDecoder(
        vocab, lm_dir / "lexicon.txt", find_lm(lm_dir), BeamConfig(beam_size=args.beam_size, **weights)
    )
    out = {
        "utterances": len(trained),
        "audio_seconds": round(audio, 1),
        "threads": args.threads,
        "beam_size": args.beam_size,
        "qn15x5_frames_per_second": round(sum(x.size(0) for x in random_lp) / audio, 2),
        "trained_frames_per_second": round(sum(t.log_probs.size(0) for t in trained) / audio, 2),
        "network_cpu_s_per_audio_s": round(net_cpu / audio, 5),
        "network_wall_s_per_audio_s": round(net_wall / audio, 5),
    }
    for name, lps in (("trained_logprobs", [t.log_probs for t in trained]), ("random_qn15x5_logprobs", random_lp)):
        c0, w0 = time.process_time(), time.perf_counter()
        for lp in lps:
            decoder.decode_one(lp)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        out[f"beam_{name}_cpu_s_per_audio_s"] = round(cpu / audio, 5)
        out[f"beam_{name}_wall_s_per_audio_s"] = round(wall / audio, 5)
        out[f"beam_{name}_added_fraction_of_network_cpu"] = round(cpu / net_cpu, 4)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/quartznet_tiny/model.pt")
    p.add_argument("--manifest-dir", default="data/prepared")
    p.add_argument("--lm-dir", default="data/lm")
    p.add_argument("--split", default="test_unseen_voice")
    p.add_argument("--tune-utterances", type=int, default=200)
    p.add_argument("--lm-weights", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0])
    p.add_argument("--word-scores", type=float, nargs="+", default=[-2.0, -1.0, 0.0, 1.0])
    p.add_argument("--beam-size", type=int, default=32)
    p.add_argument("--speed-utterances", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-wer", action="store_true", help="speed only (weights from --lm-weights/--word-scores[0])")
    p.add_argument("--skip-speed", action="store_true", help="WER only")
    p.add_argument("--out", default="bench/results/beam.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    lm_dir = Path(args.lm_dir)
    result: dict = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_before": os.getloadavg()[0],
            "torch": torch.__version__,
        }
    }
    with tempfile.TemporaryDirectory() as tmp:
        if not (lm_dir / "lexicon.txt").is_file():
            from tasks import lm as lm_task

            lm_dir = Path(tmp) / "lm"
            result["lm"] = lm_task.run({"order": 3}, Path(args.manifest_dir), _vocab_file(args, Path(tmp)), lm_dir)
        weights = {"lm_weight": args.lm_weights[0], "word_score": args.word_scores[0]}
        if not args.skip_wer:
            result["wer"] = wer_figures(args, lm_dir)
            weights = {k: result["wer"]["tuning"][k] for k in weights}
            print(
                f"WER on {args.split}: greedy {100 * result['wer']['greedy_wer']:.2f}%, "
                f"beam+LM {100 * result['wer']['beam_wer']:.2f}% (weights {weights}, tuned on dev)"
            )
        if not args.skip_speed:
            result["speed"] = speed_figures(args, lm_dir, weights)
    result["machine"]["load_after"] = os.getloadavg()[0]
    atomic_write_json(args.out, result)
    if args.skip_speed:
        return result
    s = result["speed"]
    print(
        f"network (QuartzNet 15x5, {s['threads']} threads): {s['network_cpu_s_per_audio_s']:.4f} CPU s per audio s; "
        f"beam {s['beam_size']}: {s['beam_trained_logprobs_cpu_s_per_audio_s']:.4f} (trained model's log-probs, "
        f"+{100 * s['beam_trained_logprobs_added_fraction_of_network_cpu']:.1f}%), "
        f"{s['beam_random_qn15x5_logprobs_cpu_s_per_audio_s']:.4f} (random 15x5 log-probs, "
        f"+{100 * s['beam_random_qn15x5_logprobs_added_fraction_of_network_cpu']:.1f}%)"
    )
    return result


def _vocab_file(args, tmp: Path) -> Path:
    from asr_core.models.artifact import load_model

    _, _, vocab = load_model(args.model)
    vocab.save(tmp / "chars.json")
    return tmp / "chars.json"


if __name__ == "__main__":
    main()
