"""Transducer decoding: exact streaming features, streamed == offline greedy, beam search,
and the evaluate stage on a transducer model.pt (greedy + beam WER, alignment picture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
import yaml

from asr_core.decoding.rnnt_beam import beam_decode
from asr_core.decoding.rnnt_greedy import greedy_decode
from asr_core.decoding.rnnt_stream import (
    StreamingTranscriber,
    TorchBackend,
    encode_streams,
    offline_greedy,
    stream_file,
)
from asr_core.io.jsonl import read_jsonl
from asr_core.models.artifact import load_model
from asr_core.models.rnnt.features import (
    RNNTFilterbank,
    StreamingFilterbank,
    rnnt_features_config,
)
from tests.support import noisy_model


def _waves(corpus: Path, split: str) -> list[tuple[str, torch.Tensor]]:
    return [
        (r["utt_id"], torch.from_numpy(sf.read(corpus / r["audio_filepath"], dtype="float32")[0]))
        for r in read_jsonl(corpus / f"{split}.jsonl")
    ]


@pytest.mark.parametrize("n, piece", [(100, 160), (300, 333), (5003, 160), (16037, 1000), (16037, 4960), (9000, 10**6)])
def test_streamed_frames_equal_offline_frames_exactly(n, piece):
    fe = RNNTFilterbank(rnnt_features_config()).eval()
    x = 0.1 * torch.randn(n, generator=torch.Generator().manual_seed(n))
    offline, lens = fe(x[None], torch.tensor([n]))
    sf_ = StreamingFilterbank(fe)
    parts = [sf_.accept(x[i : i + piece]) for i in range(0, n, piece)] + [sf_.finish()]
    streamed = torch.cat(parts, dim=1)
    assert streamed.shape == offline[0].shape and int(lens[0]) == streamed.size(1)
    assert torch.equal(streamed, offline[0])  # bit for bit


def test_padded_batch_features_equal_single_utterance_features():
    fe = RNNTFilterbank(rnnt_features_config()).eval()
    g = torch.Generator().manual_seed(0)
    xs = [0.1 * torch.randn(n, generator=g) for n in (5000, 16000, 200)]
    batch = torch.zeros(3, 16000)
    for i, x in enumerate(xs):
        batch[i, : len(x)] = x
    feats, lens = fe(batch, torch.tensor([len(x) for x in xs]))
    for i, x in enumerate(xs):
        alone, n = fe(x[None], torch.tensor([len(x)]))
        assert int(n[0]) == int(lens[i]) and torch.equal(feats[i, :, : int(n[0])], alone[0])


def test_streamed_greedy_equals_offline_greedy_on_a_test_split(trained):
    """Exact transcript parity over the test split, for several audio piece sizes and chunk lengths."""
    model_path, corpus = trained
    model, features, vocab = load_model(noisy_model(model_path))
    backend = TorchBackend(model)
    checked = 0
    for utt, wave in _waves(corpus, "test"):
        feats, lens = features(wave[None], torch.tensor([wave.numel()]))
        offline = greedy_decode(model, feats, lens, max_symbols=3)[0]
        assert offline == offline_greedy(backend, feats, lens, max_symbols=3)[0]
        for chunk_frames, piece in ((10, None), (2, 777), (4, 16000)):
            st = StreamingTranscriber(backend, features, vocab, chunk_frames=chunk_frames, max_symbols=3)
            partials = list(stream_file(st, wave, piece))
            assert partials[-1].final and partials[-1].text == vocab.decode(offline), (utt, chunk_frames)
            assert st.tokens == offline
            assert all(not p.final for p in partials[:-1])
        checked += len(offline) > 0
    assert checked >= 2  # not only empty transcripts were compared


def test_streams_encoded_together_equal_each_stream_alone(trained):
    """Three streams of different lengths through one batched encoder call per round: each stream's
    partial hypotheses, final transcript and token frames are those it gets alone."""
    model_path, corpus = trained
    model, features, vocab = load_model(noisy_model(model_path))
    backend = TorchBackend(model)
    waves = [w for _, w in _waves(corpus, "test")][:3]
    alone = []
    for wave in waves:
        st = StreamingTranscriber(backend, features, vocab, chunk_frames=2, max_symbols=3)
        partials = list(stream_file(st, wave))
        alone.append(([p.text for p in partials], st.token_frames))
    lanes = [StreamingTranscriber(backend, features, vocab, chunk_frames=2, max_symbols=3) for _ in waves]
    piece, off = lanes[0].chunk_samples, 0
    texts: list[list[str]] = [[] for _ in waves]
    frames: list[list[int] | None] = [None for _ in waves]
    while any(f is None for f in frames):
        live = [i for i, f in enumerate(frames) if f is None]
        for i in live:
            lanes[i].feed(waves[i][off : off + piece])
        for i, partials in zip(live, encode_streams([lanes[i] for i in live], [False] * len(live))):
            texts[i] += [p.text for p in partials]
        ended = [i for i in live if off + piece >= waves[i].numel()]
        for i in ended:
            lanes[i].end()
        encode_streams([lanes[i] for i in ended], [True] * len(ended))  # as ``finish``: only the final
        for i in ended:
            texts[i].append(lanes[i].close().text)
            frames[i] = lanes[i].token_frames
        off += piece
    assert len({w.numel() for w in waves}) == 3  # the streams end in different rounds
    assert [(t, f) for t, f in zip(texts, frames)] == alone
    assert sum(len(f) for _, f in alone) > 0  # tokens were emitted and compared


def test_chunk_frames_must_align_with_the_time_reduction(trained):
    model, features, vocab = load_model(trained[0])
    with pytest.raises(ValueError, match="multiple of the encoder's time reduction"):
        StreamingTranscriber(TorchBackend(model), features, vocab, chunk_frames=3)


def test_beam_search_scores_at_least_as_high_as_greedy(trained):
    """Beam search looks for the most probable token sequence: -rnnt_loss(beam) >= -rnnt_loss(greedy)."""
    model, features, _ = load_model(trained[0])
    for _, wave in _waves(trained[1], "dev"):
        feats, lens = features(wave[None], torch.tensor([wave.numel()]))
        greedy = greedy_decode(model, feats, lens, max_symbols=3)[0]
        beam = beam_decode(model, feats, lens, beam=4, max_symbols=3)[0]

        def logp(ids, feats=feats, lens=lens):
            y = torch.tensor([ids]) if ids else torch.zeros(1, 0, dtype=torch.long)
            with torch.no_grad():
                return -float(model(feats, lens, y, torch.tensor([len(ids)])))

        assert logp(beam) >= logp(greedy) - 1e-4


def test_evaluate_stage_reports_greedy_and_beam_and_logs_alignment(trained, tmp_path):
    from mlflow.tracking import MlflowClient

    from tasks import evaluate, tracking

    model_path, corpus = trained
    section = {
        "model": str(model_path),
        "manifest_dir": str(corpus),
        "splits": ["dev", "test"],
        "num_workers": 0,
        "transducer": {"beam": 2, "max_symbols": 3},
    }
    params = tmp_path / "evaluate.yaml"
    params.write_text(yaml.safe_dump({"evaluate": section}))
    out, report_path = tmp_path / "eval", tmp_path / "evaluate.json"
    evaluate.main(["--params", str(params), "--out", str(out), "--report", str(report_path)])
    report = json.loads(report_path.read_text())
    assert report["kind"] == "transducer"
    for split in ("dev", "test"):
        assert report[split]["utterances"] == 4 and report[split]["wer"] >= 0
        assert report[split]["beam"]["width"] == 2 and report[split]["beam"]["utterances"] == 4
        assert (out / f"{split}.tsv").is_file() and (out / f"{split}.beam.tsv").is_file()
    assert (out / "alignment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    client = MlflowClient(tracking.tracking_uri())
    exp = client.get_experiment_by_name(tracking.EXPERIMENT)
    run = client.search_runs(
        [exp.experiment_id], "tags.stage = 'evaluate'", order_by=["attributes.start_time DESC"], max_results=1
    )[0]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "eval")} >= {
        "eval/dev.tsv",
        "eval/dev.beam.tsv",
        "eval/alignment.png",
    }
    assert "dev.beam.wer" in run.data.metrics


def test_transcribe_stream_prints_partials_then_the_offline_transcript(trained, capsys):
    from tasks import transcribe

    model_path, corpus = trained
    noisy = noisy_model(model_path)
    model, features, vocab = load_model(noisy)
    row = next(iter(read_jsonl(corpus / "test.jsonl")))
    audio = str(corpus / row["audio_filepath"])
    wave = torch.from_numpy(sf.read(audio, dtype="float32")[0])
    feats, lens = features(wave[None], torch.tensor([wave.numel()]))
    expected = vocab.decode(greedy_decode(model, feats, lens, max_symbols=2)[0])
    assert expected

    texts = transcribe.main(["--model", str(noisy), "--stream", "--chunk-ms", "120", "--max-symbols", "2", audio])
    lines = capsys.readouterr().out.strip().splitlines()
    partials = [ln.split("\t") for ln in lines if ln.startswith("partial\t")]
    assert len(partials) >= 2 and all(p[1] == audio for p in partials)
    assert [float(p[2]) for p in partials] == sorted(float(p[2]) for p in partials)
    assert lines[-1] == f"{audio}\t{expected}" and texts == [expected]
    # offline modes of the same command agree
    assert transcribe.main(["--model", str(noisy), "--max-symbols", "2", audio]) == [expected]
    assert len(transcribe.main(["--model", str(noisy), "--beam", "3", "--max-symbols", "2", audio])) == 1


@pytest.mark.parametrize("max_symbols", [1, 3])
def test_one_row_greedy_path_makes_the_batched_loops_decisions(max_symbols):
    """``GreedyDecoder`` decodes one row with a joint call per emission (not per frame): the same
    tokens and frames as the general loop (a batch of two equal rows), whole or chunk by chunk."""
    from asr_core.decoding.rnnt_greedy import GreedyDecoder

    torch.manual_seed(0)
    v, d = 6, 8
    wf, wg, emb = torch.randn(d, v), torch.randn(d, v), torch.randn(v, d)
    calls = []

    def predict(y, state):
        h = torch.tanh(emb[y[:, 0]] + 0.5 * state[0][0])
        return h, (h[None],)

    def joint(f, g):
        calls.append(f.size(0))
        return f.double() @ wf.double() + g.double() @ wg.double()  # float64: no ties from rounding

    dec = GreedyDecoder(predict, joint, lambda b: (torch.zeros(1, b, d),), blank=0, max_symbols=max_symbols)
    f = torch.randn(1, 60, d)
    one = dec.advance(dec.init(1), f)
    n_one = len(calls)
    two = dec.advance(dec.init(2), f.expand(2, -1, -1).contiguous())
    chunked = dec.init(1)
    for i in range(0, 60, 7):
        dec.advance(chunked, f[:, i : i + 7])
    assert len(one.hyps[0]) > 5  # it emits, sometimes more than once per frame
    assert one.hyps[0] == two.hyps[0] == two.hyps[1] == chunked.hyps[0]
    assert one.frames[0] == two.frames[0] == chunked.frames[0] and one.t == chunked.t == 60
    assert n_one < 60 + len(one.hyps[0])  # fewer joint calls than the per-frame loop makes


def test_searches_advanced_as_rows_of_one_batch_equal_each_alone():
    """``advance_rows``: three streams at different points of their audio (different frames consumed,
    different last tokens) advanced together over chunks of different lengths make each one's own
    decisions, with token frames counted from each stream's start."""
    from asr_core.decoding.rnnt_greedy import GreedyDecoder

    torch.manual_seed(1)
    v, d = 6, 8
    wf, wg, emb = torch.randn(d, v), torch.randn(d, v), torch.randn(v, d)

    def predict(y, state):
        h = torch.tanh(emb[y[:, 0]] + 0.5 * state[0][0])
        return h, (h[None],)

    def joint(f, g):
        return f.double() @ wf.double() + g.double() @ wg.double()  # float64: no ties from rounding

    dec = GreedyDecoder(predict, joint, lambda b: (torch.zeros(1, b, d),), blank=0, max_symbols=2)
    streams = [torch.randn(1, n, d) for n in (40, 31, 25)]
    starts = (0, 9, 17)  # frames each stream has consumed alone before the rounds begin
    alone = [dec.advance(dec.init(1), f) for f in streams]
    lanes = [dec.init(1) for _ in streams]
    for lane, f, s in zip(lanes, streams, starts):
        if s:
            dec.advance(lane, f[:, :s])
    pos = list(starts)
    while any(p < f.size(1) for p, f in zip(pos, streams)):
        live = [i for i, f in enumerate(streams) if pos[i] < f.size(1)]
        lens = torch.tensor([min(5, streams[i].size(1) - pos[i]) for i in live])
        f = torch.zeros(len(live), int(lens.max()), d)
        for row, i in enumerate(live):
            f[row, : lens[row]] = streams[i][0, pos[i] : pos[i] + lens[row]]
        dec.advance_rows([lanes[i] for i in live], f, lens)
        for row, i in enumerate(live):
            pos[i] += int(lens[row])
    assert all(len(a.hyps[0]) > 3 for a in alone)
    for a, lane, f in zip(alone, lanes, streams):
        assert (lane.hyps, lane.frames, lane.t) == (a.hyps, a.frames, f.size(1))
