"""fairseq wav2vec 2.0 import without fairseq: names, layouts, cfg / legacy args, fine-tuned prefix, head."""

from __future__ import annotations

import argparse

import pytest
import torch

from asr_core.models.wav2vec2 import (
    utterance_generators,
    wav2vec2_ctc_model,
    wav2vec2_pretraining_model,
    wav2vec2_tiny,
)
from asr_core.models.wav2vec2.fairseq import (
    FINETUNED_PREFIX,
    FairseqImportError,
    args_from_config,
    config_from_args,
    import_fairseq,
    to_fairseq_state_dict,
)

CFG = wav2vec2_tiny(
    dropout=0.0, attention_dropout=0.0, dropout_input=0.0, dropout_features=0.0, extractor_mode="group_norm"
)
LETTERS = [
    "|",
    "E",
    "T",
    "A",
    "O",
    "N",
    "I",
    "H",
    "S",
    "R",
    "D",
    "L",
    "U",
    "M",
    "W",
    "C",
    "F",
    "G",
    "Y",
    "P",
    "B",
    "V",
    "K",
    "'",
    "X",
    "J",
    "Q",
    "Z",
]


def _native(cfg=CFG):
    torch.manual_seed(0)
    model = wav2vec2_pretraining_model(cfg)
    with torch.no_grad():  # non-trivial values everywhere (norms start at 1 / 0)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _fairseq_pos_conv_layout(sd: dict) -> dict:
    """fairseq's ``nn.utils.weight_norm`` layout: weight_g (1, 1, K), weight_v (D, D/groups, K)."""
    assert sd["encoder.pos_conv.0.weight_g"].shape == (1, 1, CFG.pos_conv_kernel)
    return sd


def _save(path, sd, args, legacy=False, finetuned=False):
    if finetuned:
        margs = {"_name": "wav2vec_ctc", "w2v_args": {"model": args}, "mask_prob": 0.5, "layerdrop": 0.1}
        ckpt = (
            {"args": argparse.Namespace(**{**margs, "w2v_args": argparse.Namespace(**args)})}
            if legacy
            else {"cfg": {"model": margs, "task": {"_name": "audio_finetuning"}}}
        )
    else:
        ckpt = {"args": argparse.Namespace(**args)} if legacy else {"cfg": {"model": args}}
    torch.save({**ckpt, "model": sd, "optimizer_history": [], "extra_state": {}}, path)
    return path


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("mode", ["group_norm", "layer_norm"])
def test_pretrained_checkpoint_imports_every_tensor_and_gives_identical_outputs(tmp_path, legacy, mode):
    cfg = CFG.replace(extractor_mode=mode, conv_bias=mode == "layer_norm", layer_norm_first=mode == "layer_norm")
    native = _native(cfg)
    sd = to_fairseq_state_dict(native.state_dict(), cfg)
    if mode == "group_norm":
        _fairseq_pos_conv_layout(sd)
        assert "feature_extractor.conv_layers.0.2.weight" in sd and "mask_emb" in sd and "quantizer.vars" in sd
    else:
        assert "feature_extractor.conv_layers.3.2.1.weight" in sd and "feature_extractor.conv_layers.3.0.bias" in sd
    path = _save(tmp_path / "w2v.pt", sd, args_from_config(cfg), legacy=legacy)

    model, got_cfg, finetuned = import_fairseq(path)
    assert not finetuned and got_cfg == cfg
    ours = model.state_dict()
    assert set(ours) == set(native.state_dict())
    for k, v in native.state_dict().items():
        assert torch.equal(ours[k], v), k
    wave, lens = torch.randn(2, 12000), torch.tensor([12000, 9000])
    with torch.no_grad():
        a = native.encoder(wave, lens)[0]
        b = model.encoder(wave, lens)[0]
        ta = native.train()(wave, lens, utterance_generators([1, 2], "cpu"))
        tb = model.train()(wave, lens, utterance_generators([1, 2], "cpu"))
    assert torch.equal(a, b)
    assert torch.equal(ta["contrastive"], tb["contrastive"])


def test_finetuned_checkpoint_with_prefix_and_letter_dictionary(tmp_path):
    native = _native()
    sd = to_fairseq_state_dict(
        {f"encoder.{k}": v for k, v in native.encoder.state_dict().items()}, CFG, prefix=FINETUNED_PREFIX
    )
    torch.manual_seed(1)
    V = 4 + len(LETTERS)
    sd["w2v_encoder.proj.weight"] = torch.randn(V, CFG.embed_dim)
    sd["w2v_encoder.proj.bias"] = torch.randn(V)
    (tmp_path / "dict.ltr.txt").write_text("".join(f"{s} {1000 - i}\n" for i, s in enumerate(LETTERS)))
    for legacy in (False, True):
        path = _save(tmp_path / f"ft{legacy}.pt", sd, args_from_config(CFG), legacy=legacy, finetuned=True)
        model, cfg, finetuned = import_fairseq(path, dictionary=tmp_path / "dict.ltr.txt")
        assert finetuned and cfg.mask_prob == 0.5 and cfg.layerdrop == 0.1  # fine-tuning overrides
        w = model.decoder.layers[0].weight.squeeze(-1)
        assert torch.equal(w[0], sd["w2v_encoder.proj.weight"][4])  # space <- "|"
        assert torch.equal(w[1], sd["w2v_encoder.proj.weight"][4 + LETTERS.index("A")])  # a <- "A"
        assert torch.equal(w[27], sd["w2v_encoder.proj.weight"][4 + LETTERS.index("'")])
        assert torch.equal(w[28], sd["w2v_encoder.proj.weight"][0])  # blank <- <s>
        ref = wav2vec2_ctc_model(cfg, 29).eval()
        ref.encoder.load_state_dict(native.encoder.state_dict())
        ref.decoder.load_state_dict(model.decoder.state_dict())
        x, lens = torch.randn(2, 8000), torch.tensor([8000, 5000])
        with torch.no_grad():
            assert torch.equal(model(x, lens)[0], ref(x, lens)[0])
    enc, _, _ = import_fairseq(path)  # no dictionary: the encoder alone
    assert set(enc.state_dict()) == set(native.encoder.state_dict())


def test_mismatches_name_the_keys_and_unsupported_options_are_refused(tmp_path):
    native = _native()
    sd = to_fairseq_state_dict(native.state_dict(), CFG)
    args = args_from_config(CFG)
    broken = dict(sd)
    del broken["encoder.layers.1.fc1.weight"]
    broken["encoder.layers.9.fc1.weight"] = torch.zeros(1)
    with pytest.raises(
        FairseqImportError,
        match=r"missing \['encoder.layers.1.fc1.weight.*unexpected "
        r"\['encoder.layers.9.fc1.weight'\]",
    ):
        import_fairseq(_save(tmp_path / "a.pt", broken, args))
    with pytest.raises(FairseqImportError, match="quantize_input"):
        import_fairseq(_save(tmp_path / "b.pt", sd, {**args, "quantize_input": True}))
    torch.save({"cfg": {"model": args}, "model": sd, "extra": torch.nn.Linear(1, 1)}, tmp_path / "c.pt")
    with pytest.raises(FairseqImportError, match="weights_only=True"):
        import_fairseq(tmp_path / "c.pt")
    assert config_from_args(
        {**args, "conv_feature_layers": "[(64, 10, 5)] + [(64, 3, 2)] * 4 + [(64,2,2)] * 2"}
    ).conv_kernels == (10, 3, 3, 3, 3, 2, 2)
    with pytest.raises(FairseqImportError, match="unsupported expression"):
        config_from_args({**args, "conv_feature_layers": "__import__('os')"})


def test_import_command_writes_model_files_the_stages_read(tmp_path):
    from asr_core.models.artifact import load_model
    from asr_core.train.checkpoint import load_checkpoint
    from tasks import wav2vec2_import

    native = _native()
    sd = to_fairseq_state_dict(
        {f"encoder.{k}": v for k, v in native.encoder.state_dict().items()}, CFG, prefix=FINETUNED_PREFIX
    )
    sd["w2v_encoder.proj.weight"] = torch.randn(4 + len(LETTERS), CFG.embed_dim)
    sd["w2v_encoder.proj.bias"] = torch.zeros(4 + len(LETTERS))
    (tmp_path / "dict.ltr.txt").write_text("".join(f"{s} 1\n" for s in LETTERS))
    ft = _save(tmp_path / "ft.pt", sd, args_from_config(CFG), finetuned=True)
    res = wav2vec2_import.main([str(ft), str(tmp_path / "model.pt"), "--dict", str(tmp_path / "dict.ltr.txt")])
    assert res["kind"] == "ctc" and res["normalize"] is False
    model, features, vocab = load_model(tmp_path / "model.pt")
    imported, _, _ = import_fairseq(ft, dictionary=tmp_path / "dict.ltr.txt")
    x, lens = torch.randn(1, 8000), torch.tensor([8000])
    with torch.no_grad():
        assert torch.equal(model(x, lens)[0], imported(x, lens)[0])
    pre = _save(tmp_path / "pre.pt", to_fairseq_state_dict(native.state_dict(), CFG), args_from_config(CFG))
    assert wav2vec2_import.main([str(pre), str(tmp_path / "pre_model.pt")])["kind"] == "pretraining"
    assert load_checkpoint(tmp_path / "pre_model.pt")["family"] == "wav2vec2_pretrain"
