"""Starting a run from a trained model (``model.init_from``) and measuring a run in epochs
(``loop.max_epochs``): what the small-corpus profile builds on."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from asr_core.testing import make_corpus, make_sentencepiece
from asr_core.train.engine import TrainConfig, train
from asr_core.train.recipes import recipe_classes
from tests.support import TINY_CONFORMER, tiny_conformer_params


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root, splits=(("train", 7), ("dev", 2)))
    return root, make_sentencepiece(root, root / "spm")


def _cfg(root: Path, *, vocab: Path | None = None, init_from: Path | None = None, overrides: dict | None = None):
    model = {"init_from": str(init_from) if init_from else None}
    if overrides:
        model["overrides"] = overrides
    return recipe_classes("conformer")[1].from_dict(tiny_conformer_params(root, vocab, **model))


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    """A model.pt trained for two epochs (7 utterances, batches of 3: 3 steps an epoch)."""
    root, _ = corpus
    out = tmp_path_factory.mktemp("trained")
    recipe = recipe_classes("conformer")[0](_cfg(root), max_steps=0, max_epochs=2, seed=0)
    assert (recipe.steps_per_epoch, recipe.max_steps) == (3, 6)
    summary = train(
        TrainConfig(max_steps=recipe.max_steps, eval_every=0, ckpt_every=0, log_every=1),
        recipe,
        out / "ckpt",
        final_model_path=out / "final.pt",
    )
    assert summary["steps"] == 6
    return out / "final.pt"


def test_a_length_in_epochs_becomes_steps_and_the_schedule_ends_there(corpus):
    root, _ = corpus
    recipe = recipe_classes("conformer")[0](_cfg(root), max_steps=1000, max_epochs=1.5, seed=0)
    assert recipe.max_steps == math.ceil(1.5 * recipe.steps_per_epoch) == 5  # max_steps ignored
    lrs = [recipe.schedule.lr_at(step) for step in range(recipe.max_steps + 1)]
    assert lrs[0] < lrs[1] and lrs[-1] < 0.05 * lrs[1]  # warm-up of 1 step, then decay to the end of the 5
    with pytest.raises(ValueError, match=r"train.optim.schedule.*warmup_steps"):
        cfg = _cfg(root)
        cfg.optim.schedule = {"name": "polynomial", "warmup_steps": 50}
        recipe_classes("conformer")[0](cfg, max_steps=0, max_epochs=2, seed=0)


def test_init_from_copies_the_trained_weights(corpus, trained):
    root, _ = corpus
    recipe = recipe_classes("conformer")[0](_cfg(root, init_from=trained), max_steps=1, seed=1)
    from asr_core.models.artifact import read_model_file

    source = read_model_file(trained)["model"]
    own = recipe.model.state_dict()
    assert recipe.transfer is not None and not recipe.transfer.fresh
    assert all(torch.equal(own[k], source[k]) for k in own)


def test_another_vocabulary_keeps_a_fresh_output_layer(corpus, trained):
    root, spm = corpus
    recipe = recipe_classes("conformer")[0](_cfg(root, vocab=spm, init_from=trained), max_steps=1, seed=1)
    assert recipe.transfer.fresh and all(k.startswith("decoder.") for k in recipe.transfer.fresh)
    assert "fresh" in recipe.transfer.summary()


def test_another_architecture_or_a_missing_file_is_refused(corpus, trained, tmp_path):
    root, _ = corpus
    wider = {**TINY_CONFORMER, "d_model": 48}
    with pytest.raises(ValueError, match=r"model.init_from: .* another architecture"):
        recipe_classes("conformer")[0](_cfg(root, init_from=trained, overrides=wider), max_steps=1, seed=1)
    with pytest.raises(FileNotFoundError, match="model.init_from"):
        recipe_classes("conformer")[0](_cfg(root, init_from=tmp_path / "absent.pt"), max_steps=1, seed=1)
    cfg = _cfg(root, init_from=trained)
    cfg.features = {"window_stride": 0.02}  # the same shapes, other frames
    with pytest.raises(ValueError, match=r"model.init_from: .*other features \(window_stride=0.01"):
        recipe_classes("conformer")[0](cfg, max_steps=1, seed=1)
