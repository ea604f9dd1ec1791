"""Flow parameters -> params overrides: family profiles (params/profiles/<family>.yaml)."""

from __future__ import annotations

import pytest
import yaml

from flows.params import model_overrides


def _repo(tmp_path, profiles: dict[str, dict] | None = None):
    (tmp_path / "params" / "profiles").mkdir(parents=True)
    train = {
        "name": "quartznet_tiny",
        "model": {"family": "quartznet", "preset": "tiny", "overrides": {"a": 1}},
        "features": {},
        "loop": {"max_steps": 10},
    }
    (tmp_path / "params" / "train.yaml").write_text(yaml.safe_dump({"train": train}))
    for fam, section in (profiles or {}).items():
        (tmp_path / "params" / "profiles" / f"{fam}.yaml").write_text(yaml.safe_dump({"train": section}))
    return tmp_path


def test_family_without_profile_switches_model_only(tmp_path):
    repo = _repo(tmp_path)
    assert model_overrides(repo, "jasper", None, None) == {
        "train.model.family": "jasper",
        "train.model.overrides": {},
        "train.name": "jasper_tiny",
    }
    assert model_overrides(repo, "quartznet", None, None) == {"train.model.family": "quartznet"}


def test_family_profile_overrides_every_top_level_key(tmp_path):
    prof = {
        "name": "rnnt_tiny",
        "model": {"family": "rnnt", "preset": "tiny", "overrides": {"b": 2}},
        "features": {"n_mels": 80},
        "loop": {"max_steps": 5},
    }
    repo = _repo(tmp_path, {"rnnt": prof})
    out = model_overrides(repo, "rnnt", None, None)
    assert out == {
        "train.name": "rnnt_tiny",
        "train.model": prof["model"],
        "train.features": {"n_mels": 80},
        "train.loop": {"max_steps": 5},
        "train.model.family": "rnnt",
    }
    other = model_overrides(repo, "rnnt", "e6d2", "big")
    assert other["train.model.preset"] == "e6d2" and other["train.model.overrides"] == {}
    assert other["train.name"] == "big"


def test_broken_profile_names_the_file(tmp_path):
    repo = _repo(tmp_path)
    (repo / "params" / "profiles" / "rnnt.yaml").write_text("train: 3\n")
    with pytest.raises(ValueError, match="rnnt.yaml"):
        model_overrides(repo, "rnnt", None, None)


def test_profile_nulls_the_committed_keys_it_does_not_set(tmp_path, monkeypatch):
    """params/train.yaml's `augment` (QuartzNet's) must not reach a family whose profile has none: the
    profile nulls it, and the train stage reads a null key as absent."""
    prof = {"name": "w", "model": {"family": "wav2vec2", "preset": "tiny"}, "loop": {"max_steps": 5}}
    repo = _repo(tmp_path, {"wav2vec2": prof})
    train = yaml.safe_load((repo / "params" / "train.yaml").read_text())
    train["train"]["augment"] = {"speed_perturb": None}
    (repo / "params" / "train.yaml").write_text(yaml.safe_dump(train))
    out = model_overrides(repo, "wav2vec2", None, None)
    assert out["train.augment"] is None and out["train.features"] is None and out["train.loop"] == {"max_steps": 5}

    from tasks.train import worker_config

    config, _, _ = worker_config(
        {
            "name": "w",
            "model": {"family": "wav2vec2", "preset": "tiny"},
            "augment": None,
            "seed": None,
            "loop": {"max_steps": 1},
        },
        tmp_path / "models",
    )
    assert "augment" not in config["recipe"] and config["seed"] == 0


@pytest.mark.parametrize("family", ["quartznet", "jasper", "rnnt", "conformer"])
def test_flow_params_validated_smoke_run_fits_the_warmup(family):
    """The README's smoke run (`--param max_steps=4`) passes validation on the committed params of
    every family: the warm-up shrinks to fit; the same steps given as a raw override are refused."""
    from flows.params import training_overrides
    from flows.validation import FlowParamsError, validate
    from tests import REPO

    kw = dict(preset=None, name=None, ray_workers=None, loader_workers=None, source=None, repo=REPO)
    smoke = training_overrides(family, max_steps=4, overrides=None, **kw)
    assert smoke["train.loop.max_steps"] == 4 and smoke["train.optim.schedule.warmup_steps"] == 0
    assert smoke["train.loop.max_epochs"] is None  # the flow's length wins over a profile's epochs
    validate(REPO, smoke)
    raw = training_overrides(family, max_steps=None, overrides={"train.loop.max_steps": 4}, **kw)
    with pytest.raises(FlowParamsError, match=r"train.loop.max_steps=4: polynomial schedule needs"):
        validate(REPO, raw)
    with pytest.raises(FlowParamsError, match=r"train: unknown key\(s\) \['sead'\]"):
        validate(REPO, {**smoke, "train.sead": 1})
    with pytest.raises(FlowParamsError, match="expected a list"):
        validate(REPO, {**smoke, "benchmark.devices": "cpu"})
