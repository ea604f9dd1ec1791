"""pretrain-wav2vec2 / finetune-wav2vec2: profiles become params overrides; deployments are listed."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests import REPO


def _repo(tmp_path: Path) -> Path:
    (tmp_path / "params" / "profiles").mkdir(parents=True)
    for f in ("train.yaml", "download.yaml", "profiles/wav2vec2.yaml", "profiles/wav2vec2_pretrain.yaml"):
        shutil.copy(REPO / "params" / f, tmp_path / "params" / f)
    return tmp_path


def test_profiles_are_complete_train_sections_the_recipes_accept(tmp_path):
    from asr_core.train.recipes import recipe_classes
    from tasks.train import worker_config

    for name, family in (("wav2vec2_pretrain", "wav2vec2_pretrain"), ("wav2vec2", "wav2vec2")):
        section = yaml.safe_load((REPO / "params" / "profiles" / f"{name}.yaml").read_text())["train"]
        assert section["model"]["family"] == family
        config, ray_cfg, out_name = worker_config(section, tmp_path / "models")  # checks every key
        assert config["family"] == family and out_name == section["name"]
        recipe_classes(family)[1].from_dict(config["recipe"])
    ft = yaml.safe_load((REPO / "params" / "profiles" / "wav2vec2.yaml").read_text())["train"]
    pre = yaml.safe_load((REPO / "params" / "profiles" / "wav2vec2_pretrain.yaml").read_text())["train"]
    assert (
        ft["model"]["init_from"] == f"models/{pre['name']}/model.pt" and ft["model"]["preset"] == pre["model"]["preset"]
    )
    config, _, _ = worker_config(ft, tmp_path / "models")
    assert Path(config["recipe"]["model"]["init_from"]).is_absolute()


def test_flow_parameters_apply_the_wav2vec2_profiles(tmp_path):
    from flows.params import training_overrides
    from flows.pipeline import effective_overrides

    repo = _repo(tmp_path)
    kw = dict(name=None, max_steps=5, ray_workers=None, loader_workers=None, source=None, overrides=None, repo=repo)
    pre = effective_overrides(repo, training_overrides("wav2vec2_pretrain", preset=None, **kw))
    assert pre["train.model.family"] == "wav2vec2_pretrain" and pre["train.name"] == "wav2vec2_pretrain"
    assert pre["train.loop.max_steps"] == 5 and pre["train.features"] == {"normalize": True}
    ft = training_overrides("wav2vec2", preset="base", **kw)
    assert ft["train.model.family"] == "wav2vec2" and ft["train.model.preset"] == "base"
    assert ft["train.name"] == "wav2vec2_base" and ft["train.model.overrides"] == {}


def test_deployments_and_registry_names():
    from flows import config

    cfg = config.load(REPO)["flows"]
    assert cfg["deployments"]["pretrain-wav2vec2"] == "default" and cfg["deployments"]["finetune-wav2vec2"]
    assert cfg["registry"]["wav2vec2"] == "asr-wav2vec2" and "wav2vec2_pretrain" not in cfg["registry"]
    from flows.finetune_wav2vec2 import finetune_wav2vec2
    from flows.pretrain_wav2vec2 import PRETRAIN_STAGES, pretrain_wav2vec2

    assert pretrain_wav2vec2.name == "pretrain-wav2vec2" and finetune_wav2vec2.name == "finetune-wav2vec2"
    assert PRETRAIN_STAGES == ["download", "prepare", "train"]
    src = (REPO / "flows" / "serve.py").read_text()
    assert "pretrain_wav2vec2.to_deployment" in src and "finetune_wav2vec2.to_deployment" in src
