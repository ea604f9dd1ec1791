"""Which training recipe trains which model family.

A recipe (see :mod:`asr_core.train.engine` for what the loop asks of it) is built per rank as
``recipe_cls(config, max_steps=, grad_accum=, seed=, rank=, world_size=, device=)`` from
``config_cls.from_dict(<the train params minus name/seed/loop/ray>)``. Recipes are imported on
demand: each pulls in its own data, feature and model code.

A family of the model registry (``asr_core.models.FAMILIES``) is trained by its objective's recipe;
only families with a recipe of their own are listed here.
"""

from __future__ import annotations

import importlib
from typing import Any

# By objective (the model family's ``kind``): a family of the model registry needs no entry here.
BY_KIND: dict[str, tuple[str, str, str]] = {
    "ctc": ("asr_core.train.ctc_recipe", "CTCRecipe", "CTCRecipeConfig"),
    "transducer": ("asr_core.train.rnnt_recipe", "RNNTRecipe", "RNNTRecipeConfig"),
}
# Families trained by a recipe of their own: wav2vec 2.0 (pre-training, and fine-tuning from it).
RECIPES: dict[str, tuple[str, str, str]] = {
    "wav2vec2_pretrain": ("asr_core.train.wav2vec2_recipe", "Wav2Vec2PretrainRecipe", "Wav2Vec2RecipeConfig"),
    "wav2vec2": ("asr_core.train.wav2vec2_recipe", "Wav2Vec2CTCRecipe", "Wav2Vec2RecipeConfig"),
}


def recipe_classes(family: str) -> tuple[type, Any]:
    """``(recipe class, config class)`` for ``family`` (``train.model.family``)."""
    from asr_core.models import FAMILIES

    if family in RECIPES:
        module, recipe, config = RECIPES[family]
    elif family in FAMILIES:
        module, recipe, config = BY_KIND[FAMILIES[family].kind]
    else:
        known = sorted({*RECIPES, *FAMILIES})
        raise ValueError(f"train.model.family: no training recipe for {family!r}; known: {known}")
    mod = importlib.import_module(module)
    return getattr(mod, recipe), getattr(mod, config)
