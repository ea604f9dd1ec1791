"""Which training recipe trains which model family.

A recipe (see :mod:`asr_core.train.engine` for what the loop asks of it) is built per rank as
``recipe_cls(config, max_steps=, grad_accum=, seed=, rank=, world_size=, device=)`` from
``config_cls.from_dict(<the train params minus name/seed/loop/ray>)``. Recipes are imported on
demand: each pulls in its own data, feature and model code.

A new family registers one line here: ``family -> (module, recipe class, config class)``.
"""

from __future__ import annotations

import importlib
from typing import Any

RECIPES: dict[str, tuple[str, str, str]] = {
    "quartznet": ("asr_core.train.ctc_recipe", "CTCRecipe", "CTCRecipeConfig"),
    "jasper": ("asr_core.train.ctc_recipe", "CTCRecipe", "CTCRecipeConfig"),
    "rnnt": ("asr_core.train.rnnt_recipe", "RNNTRecipe", "RNNTRecipeConfig"),
    "wav2vec2_pretrain": ("asr_core.train.wav2vec2_recipe", "Wav2Vec2PretrainRecipe", "Wav2Vec2RecipeConfig"),
    "wav2vec2": ("asr_core.train.wav2vec2_recipe", "Wav2Vec2CTCRecipe", "Wav2Vec2RecipeConfig"),
}


def recipe_classes(family: str) -> tuple[type, Any]:
    """``(recipe class, config class)`` for ``family`` (``train.model.family``)."""
    try:
        module, recipe, config = RECIPES[family]
    except KeyError:
        raise ValueError(f"train.model.family: no training recipe for {family!r}; known: {sorted(RECIPES)}") from None
    mod = importlib.import_module(module)
    return getattr(mod, recipe), getattr(mod, config)
