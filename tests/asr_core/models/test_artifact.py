"""model.pt: the version 2 layout round-trips; version 1 files load; other files are refused clearly."""

from __future__ import annotations

import pytest
import torch

from asr_core.features import FilterbankConfig
from asr_core.io.torch_files import CheckpointError
from asr_core.models import build_model, model_config
from asr_core.models.artifact import load_model, read_model_file, save_model
from asr_core.text import CharVocab


def _tiny(tmp_path):
    torch.manual_seed(0)
    model = build_model("quartznet", "tiny", 29)
    path = save_model(
        tmp_path / "model.pt",
        kind="ctc",
        family="quartznet",
        frontend="filterbank",
        model_config=model_config("quartznet", "tiny").to_dict(),
        num_outputs=29,
        features=FilterbankConfig().to_dict(),
        vocab=CharVocab().to_dict(),
        state_dict=model.state_dict(),
        step=7,
    )
    return path, model


def test_round_trip_names_the_kind_and_front_end(tmp_path):
    path, model = _tiny(tmp_path)
    obj = read_model_file(path)
    assert (obj["format"], obj["version"], obj["kind"], obj["frontend"]) == ("asr-toolkit/model", 2, "ctc", "filterbank")
    loaded, features, vocab = load_model(path)
    assert loaded.kind == "ctc" and features.feature_dim == 64 and vocab.blank == 28
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_version_1_files_load_with_kind_and_front_end_from_the_family(tmp_path):
    path, model = _tiny(tmp_path)
    obj = torch.load(path, weights_only=True)
    for k in ("kind", "frontend"):
        del obj[k]
    obj.update(format="asr-toolkit/ctc-model", version=1)
    old = tmp_path / "old.pt"
    torch.save(obj, old)
    upgraded = read_model_file(old)
    assert (upgraded["kind"], upgraded["frontend"], upgraded["version"]) == ("ctc", "filterbank", 2)
    loaded, _, _ = load_model(old)
    x, lens = torch.randn(1, 64, 50), torch.tensor([50])
    torch.testing.assert_close(loaded(x, lens)[0], model.eval()(x, lens)[0], rtol=0, atol=0)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"format": "asr-toolkit/wav2vec2-pretraining"}, "pre-training model: fine-tune it"),
        ({"format": "something/else"}, "not a model file"),
        ({"version": 3}, "version 3"),
        ({"kind": "seq2seq"}, "unknown model kind 'seq2seq'"),
        ({"kind": "transducer"}, "weights do not fit a quartznet transducer model"),
    ],
)
def test_other_files_are_refused_with_the_reason(tmp_path, changes, match):
    path, _ = _tiny(tmp_path)
    obj = torch.load(path, weights_only=True)
    obj.update(changes)
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=match):
        load_model(path)
