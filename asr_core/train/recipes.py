"""Which training recipe trains which model family.

A recipe (see :mod:`asr_core.train.engine` for what the loop asks of it) is built per rank as
``recipe_cls(config, max_steps=, grad_accum=, seed=, rank=, world_size=, device=)`` from
``config_cls.from_dict(<the train params minus name/seed/loop/ray>)``. Recipes are imported on
demand: each pulls in its own data, feature and model code.

A model of the registry (``asr_core.models.FAMILIES``) is trained by the recipe of its head
(``train.model.head``, default the family's): any encoder family under any head, with no entry
here. Only families with a recipe of their own (wav2vec 2.0) are listed.
"""

from __future__ import annotations

import importlib
from typing import Any

# By objective (the model family's ``kind``): a family of the model registry needs no entry here.
BY_KIND: dict[str, tuple[str, str, str]] = {
    "ctc": ("asr_core.train.ctc_recipe", "CTCRecipe", "CTCRecipeConfig"),
    "transducer": ("asr_core.train.transducer_recipe", "TransducerRecipe", "TransducerRecipeConfig"),
}
# Families trained by a recipe of their own: wav2vec 2.0 (pre-training, and fine-tuning from it).
RECIPES: dict[str, tuple[str, str, str]] = {
    "wav2vec2_pretrain": ("asr_core.train.wav2vec2_recipe", "Wav2Vec2PretrainRecipe", "Wav2Vec2RecipeConfig"),
    "wav2vec2": ("asr_core.train.wav2vec2_recipe", "Wav2Vec2CTCRecipe", "Wav2Vec2RecipeConfig"),
}


def recipe_classes(family: str, head: str | None = None) -> tuple[type, Any]:
    """``(recipe class, config class)`` for ``family`` (``train.model.family``) under ``head``
    (``train.model.head``; None: the family's own)."""
    from asr_core.models import FAMILIES, KINDS

    if family in RECIPES:
        if head not in (None, "ctc"):
            raise ValueError(f"train.model.head: {family} trains with a recipe of its own (CTC), got {head!r}")
        module, recipe, config = RECIPES[family]
    elif family in FAMILIES:
        kind = head or FAMILIES[family].kind
        if kind not in KINDS:
            raise ValueError(f"train.model.head must be one of {list(KINDS)}, got {kind!r}")
        module, recipe, config = BY_KIND[kind]
    else:
        known = sorted({*RECIPES, *FAMILIES})
        raise ValueError(f"train.model.family: no training recipe for {family!r}; known: {known}")
    mod = importlib.import_module(module)
    return getattr(mod, recipe), getattr(mod, config)
