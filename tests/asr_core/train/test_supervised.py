"""Any encoder family under any head on either vocabulary, through the one supervised recipe.

Conformer-CTC on characters, Conformer-CTC on sentencepiece pieces and a Conformer-transducer
are params changes only (``model.head``, ``data.vocab``): each trains a few steps through the
engine, writes a ``model.pt`` that names its kind and loads back to the same outputs, and its
objective's evaluation decodes it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asr_core.models.artifact import load_model, read_model_file
from asr_core.objectives import objective
from asr_core.testing import make_corpus, make_sentencepiece
from asr_core.train.engine import TrainConfig, train
from asr_core.train.recipes import recipe_classes
from tests.support import tiny_conformer_params


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root, splits=(("train", 6), ("dev", 3), ("test", 2)))
    return root, make_sentencepiece(root, root / "spm")


def _params(corpus: Path, vocab: Path | None, head: str | None) -> dict:
    return tiny_conformer_params(corpus, vocab, head=head)


@pytest.mark.parametrize(
    "head, vocab, kind, vocab_type, blank",
    [
        (None, "chars", "ctc", "char", 28),
        (None, "spm", "ctc", "sentencepiece", 0),
        ("transducer", "spm", "transducer", "sentencepiece", 0),
    ],
    ids=["ctc-chars", "ctc-pieces", "transducer-pieces"],
)
def test_conformer_under_each_head_and_vocabulary(corpus, tmp_path, head, vocab, kind, vocab_type, blank):
    root, spm = corpus
    recipe_cls, config_cls = recipe_classes("conformer", head)
    cfg = config_cls.from_dict(_params(root, spm if vocab == "spm" else None, head))
    recipe = recipe_cls(cfg, max_steps=3, seed=0)
    assert recipe.vocab.blank == blank
    summary = train(
        TrainConfig(max_steps=3, eval_every=3, ckpt_every=3, log_every=1),
        recipe,
        tmp_path / "ckpt",
        final_model_path=tmp_path / "final.pt",
    )
    assert summary["steps"] == 3
    assert summary["final_metrics"]["wer"] >= 0.0 and summary["final_metrics"]["utterances"] == 3

    raw = read_model_file(tmp_path / "final.pt")
    assert (raw["kind"], raw["family"], raw["frontend"], raw["vocab"]["type"]) == (
        kind,
        "conformer",
        "filterbank",
        vocab_type,
    )
    model, features, vocab_ = load_model(tmp_path / "final.pt")
    assert model.kind == kind and vocab_.blank == blank
    x, lens = torch.randn(1, 64, 50), torch.tensor([50])
    recipe.model.eval()
    if kind == "ctc":
        torch.testing.assert_close(model(x, lens)[0], recipe.model(x, lens)[0])
    else:
        torch.testing.assert_close(model.encoder(x, lens)[0], recipe.model.encoder(x, lens)[0])

    opts = {
        **objective(kind).evaluate_options,
        "manifest_dir": str(root),
        "splits": ["test"],
        "model": "final.pt",
        "batch_seconds": 60.0,
        "num_workers": 0,
        "max_utterances": None,
        "device": "cpu",
        "lm": None,
    }
    report = objective(kind).evaluate(model, features, vocab_, opts, tmp_path)
    assert report["test"]["utterances"] == 2 and report["kind"] == kind


def test_heads_the_recipes_refuse(corpus):
    root, spm = corpus
    _, ctc_cfg = recipe_classes("conformer", "ctc")
    with pytest.raises(ValueError, match="model.head: the CTC recipe trains a CTC head"):
        ctc_cfg.from_dict(_params(root, None, "transducer"))
    with pytest.raises(ValueError, match="train.model.head must be one of"):
        recipe_classes("conformer", "seq2seq")
    tr_cls, tr_cfg = recipe_classes("conformer", "transducer")
    with pytest.raises(ValueError, match="a transducer needs a vocabulary whose blank is symbol 0"):
        tr_cls(tr_cfg.from_dict(_params(root, None, "transducer")), max_steps=1)
    with pytest.raises(ValueError, match="model.family: wav2vec2 reads waveforms"):
        tr_cfg.from_dict({**_params(root, spm, "transducer"), "model": {"family": "wav2vec2", "preset": "tiny"}})


@pytest.mark.parametrize("head", [None, "transducer"], ids=["ctc", "transducer"])
def test_loss_normalization_per_utterance_or_per_token(corpus, head):
    """The batch loss is the mean over utterances, or the sum over the batch divided by its target tokens
    (then the engine weights the batch by its tokens, so short-clip batches count as much per token)."""
    root, spm = corpus
    recipe_cls, config_cls = recipe_classes("conformer", head)
    params = _params(root, spm, head)
    recipes = {}
    for norm in ("utterance", "token"):
        p = {**params, "optim": {**params.get("optim", {}), "loss_normalization": norm}}
        torch.manual_seed(0)
        recipes[norm] = recipe_cls(config_cls.from_dict(p), max_steps=1, seed=0)
    batch = next(iter(recipes["token"].train_loader))
    token_lens = batch["token_lens"]
    recipes["token"].model.load_state_dict(recipes["utterance"].model.state_dict())
    with torch.no_grad():
        per_utt, n_utt = recipes["utterance"].loss(recipes["utterance"].model.eval(), batch)
        per_tok, n_tok = recipes["token"].loss(recipes["token"].model.eval(), batch)
    assert n_utt == batch["feats"].size(0) and n_tok == int(token_lens.sum())
    torch.testing.assert_close(per_tok * n_tok, per_utt * n_utt)  # both are the batch's summed loss

    with pytest.raises(ValueError, match="optim.loss_normalization must be one of"):
        config_cls.from_dict({**params, "optim": {**params.get("optim", {}), "loss_normalization": "frame"}})


def test_every_recipe_defaults_to_a_per_token_loss():
    """Duration-bucketed batches hold many short clips or few long ones; a mean over utterances would
    weigh a token of a short-clip batch several times less (measured: 8.5 WER points on the default)."""
    from asr_core.train.sections import OptimParams
    from asr_core.train.wav2vec2_recipe import W2VOptimParams

    assert OptimParams().loss_normalization == "token"
    assert W2VOptimParams().loss_normalization == "token"
    for family, head in (("quartznet", None), ("conformer", "transducer")):
        assert recipe_classes(family, head)[1]().optim.loss_normalization == "token"
