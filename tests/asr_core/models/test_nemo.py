"""QuartzNet .nemo <-> model.pt conversion.

The archives are built here the way NeMo writes them (``tar`` of a folder with
``model_config.yaml`` and ``model_weights.ckpt``, config laid out as NeMo's
``quartznet_15x5.yaml``), independently of the exporter under test.
"""

from __future__ import annotations

import copy
import io
import re
import tarfile

import pytest
import torch
import yaml

from asr_core.data.download.archive import UnsafeArchiveError
from asr_core.features import FilterbankConfig, mel_filterbank
from asr_core.models import build_model, build_model_from_config, dle_to_nemo_keys, model_config
from asr_core.models.nemo import (
    NemoFormatError,
    export_nemo,
    features_from_nemo,
    import_nemo,
    quartznet_config_from_nemo,
    read_nemo,
)
from asr_core.text import CharVocab
from tasks.convert_nemo import main

LABELS = [" ", *"abcdefghijklmnopqrstuvwxyz", "'"]
PREPROCESSOR = {  # NeMo's quartznet_15x5.yaml
    "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
    "normalize": "per_feature",
    "window_size": 0.02,
    "sample_rate": 16000,
    "window_stride": 0.01,
    "window": "hann",
    "features": 64,
    "n_fft": 512,
    "frame_splicing": 1,
    "dither": 0.00001,
}
GROUPS_FULL = [(256, 33), (256, 39), (512, 51), (512, 63), (512, 75)]
GROUPS_TINY = [(128, 33), (128, 39), (256, 51), (256, 63), (256, 75)]


def nemo_blocks(c1, groups, repeats, sub_blocks, c2, c3, dropout=0.0):
    """NeMo's ``encoder.jasper``: one entry per block, a repeated block listed ``repeats`` times."""

    def block(filters, kernel, repeat=1, stride=1, dilation=1, residual=False):
        return {
            "dilation": [dilation],
            "dropout": dropout,
            "filters": filters,
            "kernel": [kernel],
            "repeat": repeat,
            "residual": residual,
            "separable": True,
            "stride": [stride],
        }

    blocks = [block(c1, 33, stride=2)]
    for filters, kernel in groups:
        blocks += [block(filters, kernel, sub_blocks, residual=True) for _ in range(repeats)]
    blocks.append(block(c2, 87, dilation=2))
    c3_block = block(c3, 1)
    del c3_block["separable"]  # NeMo's C3 entry leaves it out (default false)
    return blocks + [c3_block]


TINY_BLOCKS = nemo_blocks(128, GROUPS_TINY, 1, 3, 256, 512)
BLOCKS_5X5 = nemo_blocks(256, GROUPS_FULL, 1, 5, 512, 1024)


def nemo_config(blocks, labels=LABELS):
    return {
        "sample_rate": 16000,
        "labels": labels,
        "train_ds": {"manifest_filepath": "???", "labels": labels, "batch_size": 32},
        "preprocessor": dict(PREPROCESSOR),
        "spec_augment": {"_target_": "nemo.collections.asr.modules.SpectrogramAugmentation", "rect_masks": 5},
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConvASREncoder",
            "feat_in": 64,
            "activation": "relu",
            "conv_mask": True,
            "jasper": blocks,
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.ConvASRDecoder",
            "feat_in": blocks[-1]["filters"],
            "num_classes": len(labels),
            "vocabulary": labels,
        },
        "optim": {"name": "novograd", "lr": 0.01},
        "target": "nemo.collections.asr.models.ctc_models.EncDecCTCModel",
    }


def random_model(preset="tiny", seed=0):
    torch.manual_seed(seed)
    model = build_model("quartznet", preset, 29)
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.num_batches_tracked.fill_(7)
    return model.eval()


def nemo_state(model):
    """NeMo's state dict: preprocessor tensors first, then the renamed model."""
    return {
        "preprocessor.featurizer.window": torch.hann_window(320, periodic=False),
        "preprocessor.featurizer.fb": mel_filterbank(16000, 512, 64).unsqueeze(0),
        **dle_to_nemo_keys(model.state_dict()),
    }


def write_nemo_tar(path, config, state, *, gz=False, extra_members=()):
    """A tar of a folder holding the two files, archived as "." (NeMo's ``save_to``)."""
    folder = path.parent / (path.name + ".d")
    folder.mkdir()
    (folder / "model_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    torch.save(state, folder / "model_weights.ckpt")
    with tarfile.open(path, "w:gz" if gz else "w") as tf:
        tf.add(folder, arcname=".")
        for name, data in extra_members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def make_nemo(tmp_path, model=None, config=None, state=None, name="model.nemo", **kw):
    model = model if model is not None else random_model()
    config = config if config is not None else nemo_config(TINY_BLOCKS)
    state = state if state is not None else nemo_state(model)
    return write_nemo_tar(tmp_path / name, config, state, **kw)


def load_artifact(path):
    art = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model_from_config(art["family"], art["model_config"], art["num_outputs"])
    model.load_state_dict(art["model"], strict=True)
    return art, model.eval()


def outputs(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    x, x_lens = torch.randn(2, 64, 50, generator=g), torch.tensor([50, 31])
    with torch.no_grad():
        return model(x, x_lens)[0]


# ---------------------------------------------------------------- import


@pytest.mark.parametrize("preset, blocks", [("tiny", TINY_BLOCKS), ("5x5", BLOCKS_5X5)])
def test_import_loads_every_tensor_and_matches_the_model(tmp_path, preset, blocks):
    source = random_model(preset, seed=3)
    nemo = make_nemo(tmp_path, source, nemo_config(blocks))
    done = import_nemo(nemo, tmp_path / "out" / "model.pt")

    art, model = load_artifact(done.path)
    assert {"family", "model_config", "num_outputs", "features", "vocab", "model", "step", "metrics"} <= set(art)
    assert art["family"] == "quartznet" and art["num_outputs"] == 29 and done.notes == ()
    assert art["model_config"] == model_config("quartznet", preset).to_dict()
    assert FilterbankConfig.from_dict(art["features"]) == FilterbankConfig()
    assert CharVocab.from_dict(art["vocab"]) == CharVocab()
    expected = source.state_dict()
    assert list(art["model"]) == list(expected)
    for k, v in expected.items():
        assert torch.equal(art["model"][k], v), k
    torch.testing.assert_close(outputs(model), outputs(source), rtol=0, atol=0)


def test_import_is_compatible_with_the_model_loader(tmp_path):
    from asr_core.models.artifact import load_model

    source = random_model(seed=4)
    path = import_nemo(make_nemo(tmp_path, source), tmp_path / "model.pt").path
    model, features, vocab = load_model(path)
    assert vocab == CharVocab() and features.cfg == FilterbankConfig()
    torch.testing.assert_close(outputs(model), outputs(source), rtol=0, atol=0)


def test_import_reads_gzip_and_the_old_cls_params_layout(tmp_path):
    config = nemo_config(TINY_BLOCKS)
    pre = config["preprocessor"]
    config["preprocessor"] = {"cls": pre.pop("_target_"), "params": {**pre, "sample_rate": "${sample_rate}"}}
    config["decoder"]["vocabulary"] = "${model.labels}"  # OmegaConf interpolations as some saved configs hold
    nemo = make_nemo(tmp_path, config=config, gz=True, extra_members=[("./vocab.txt", b"a\nb\n")])
    art, _ = load_artifact(import_nemo(nemo, tmp_path / "model.pt").path)
    assert art["vocab"]["symbols"] == LABELS and art["features"]["sample_rate"] == 16000


def test_nemo_15x5_layout_maps_onto_the_presets():
    for repeats, preset in [(3, "15x5"), (2, "10x5"), (1, "5x5")]:
        encoder = nemo_config(nemo_blocks(256, GROUPS_FULL, repeats, 5, 512, 1024))["encoder"]
        assert quartznet_config_from_nemo(encoder, []) == model_config("quartznet", preset)
    assert features_from_nemo(PREPROCESSOR, []) == FilterbankConfig()


# ---------------------------------------------------------------- refusals


def test_archive_with_parent_path_member_is_refused(tmp_path):
    nemo = make_nemo(tmp_path, extra_members=[("../evil", b"pwned")])
    with pytest.raises(UnsafeArchiveError, match=r"\.\./evil"):
        import_nemo(nemo, tmp_path / "out" / "model.pt")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil").exists()


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda b: b[1].update(separable=False), r"encoder\.jasper\[1\]\.separable is false.*Jasper"),
        (lambda b: b[2].update(residual_dense=True), r"encoder\.jasper\[2\]\.residual_dense=True"),
        (lambda b: b[-2].update(residual=True), r"encoder\.jasper\[6\] does not fit a QuartzNet C2: residual"),
        (lambda b: b[2].update(dilation=[2]), r"encoder\.jasper\[2\] does not fit a QuartzNet B block: dilation"),
        (lambda b: b[3].update(repeat=2), r"encoder\.jasper\[3\] does not fit .*repeat=2 \(QuartzNet: 3\)"),
        (lambda b: b[1].update(se=True), r"encoder\.jasper\[1\]\.se=True is not supported"),
    ],
)
def test_unsupported_encoder_layouts_name_the_field(tmp_path, edit, match):
    config = nemo_config(copy.deepcopy(TINY_BLOCKS))
    edit(config["encoder"]["jasper"])
    with pytest.raises(NemoFormatError, match=match):
        import_nemo(make_nemo(tmp_path, config=config), tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("frame_splicing", 3, r"preprocessor\.frame_splicing=3 is not supported"),
        ("exact_pad", True, r"preprocessor\.exact_pad=True"),
        ("normalize", {"fixed_mean": [0.0], "fixed_std": [1.0]}, r"preprocessor\.normalize=.*fixed"),
        ("window", "kaiser", r"preprocessor\.window='kaiser'"),
        ("features", 80, r"encoder\.feat_in=64 but preprocessor\.features=80"),
    ],
)
def test_unsupported_preprocessor_values_are_named(tmp_path, key, value, match):
    config = nemo_config(TINY_BLOCKS)
    config["preprocessor"][key] = value
    with pytest.raises(NemoFormatError, match=match):
        import_nemo(make_nemo(tmp_path, config=config), tmp_path / "model.pt")


def test_vocabulary_other_than_ours_is_refused(tmp_path):
    labels = [s.upper() for s in LABELS]
    with pytest.raises(NemoFormatError, match=r"decoder\.vocabulary .*extra \['A', 'B'"):
        import_nemo(make_nemo(tmp_path, config=nemo_config(TINY_BLOCKS, labels)), tmp_path / "model.pt")


def test_vocabulary_in_another_order_is_mapped(tmp_path):
    source = random_model(seed=5)
    labels = LABELS[1:] + LABELS[:1]  # space last: NeMo's rows 0..27 are a..z, ', space
    done = import_nemo(make_nemo(tmp_path, source, nemo_config(TINY_BLOCKS, labels)), tmp_path / "model.pt")
    assert any("reordered" in n for n in done.notes)
    art, model = load_artifact(done.path)
    assert art["vocab"]["symbols"] == LABELS
    want = outputs(source)  # columns in NeMo's label order, blank last
    order = [labels.index(s) for s in LABELS] + [28]
    torch.testing.assert_close(outputs(model), want[..., order])  # same sums in another order


def test_missing_and_unexpected_weights_are_named(tmp_path):
    state = nemo_state(random_model())
    del state["encoder.encoder.2.mconv.1.conv.weight"]
    state["encoder.encoder.9.mconv.0.conv.weight"] = torch.zeros(1, 1, 1)
    missing = re.escape("missing keys ['encoder.encoder.2.mconv.1.conv.weight']")
    unexpected = re.escape("unexpected keys ['encoder.encoder.9.mconv.0.conv.weight']")
    with pytest.raises(NemoFormatError, match=f"{missing}.*{unexpected}"):
        import_nemo(make_nemo(tmp_path, state=state), tmp_path / "model.pt")


def test_filterbank_that_differs_from_the_config_is_refused(tmp_path):
    state = nemo_state(random_model())
    state["preprocessor.featurizer.fb"] = state["preprocessor.featurizer.fb"] * 1.1
    nemo = make_nemo(tmp_path, state=state)
    with pytest.raises(NemoFormatError, match=r"preprocessor\.featurizer\.fb differs"):
        import_nemo(nemo, tmp_path / "model.pt")
    done = import_nemo(nemo, tmp_path / "model.pt", check_features=False)
    assert any("featurizer.fb" in n for n in done.notes)


# ---------------------------------------------------------------- export and round trip


def write_model_pt(path, net, **changes):
    """model.pt as the training stage writes it (asr_core.models.artifact.save_model's keys)."""
    obj = {
        "format": "asr-toolkit/model",
        "version": 2,
        "kind": "ctc",
        "family": "quartznet",
        "frontend": "filterbank",
        "model_config": model_config("quartznet", "tiny").to_dict(),
        "num_outputs": 29,
        "features": FilterbankConfig().to_dict(),
        "vocab": CharVocab().to_dict(),
        "model": net.state_dict(),
        "step": 1234,
        "metrics": {"dev_wer": 0.5},
    }
    obj.update(changes)
    torch.save(obj, path)
    return path


def test_round_trip_model_pt_to_nemo_to_model_pt(tmp_path):
    source = random_model(seed=8)
    original = write_model_pt(tmp_path / "model.pt", source)
    exported = export_nemo(original, tmp_path / "out" / "model.nemo")
    assert any("step 1234" in n for n in exported.notes)

    with tarfile.open(exported.path) as tf:  # NeMo's layout: an uncompressed tar of "."
        assert sorted(tf.getnames()) == ["./model_config.yaml", "./model_weights.ckpt"]
    config, state = read_nemo(exported.path)
    want = nemo_config(TINY_BLOCKS)
    for block in want["encoder"]["jasper"]:
        block.setdefault("separable", False)
    assert config["encoder"] == want["encoder"]
    assert config["decoder"] == want["decoder"] and config["target"] == want["target"]
    assert {k: config["preprocessor"][k] for k in PREPROCESSOR} == PREPROCESSOR
    hand_made = nemo_state(source)
    assert list(state) == list(hand_made)  # NeMo's keys, preprocessor first: loads strictly there
    for k, v in hand_made.items():
        assert v.shape == state[k].shape and torch.allclose(v, state[k], atol=1e-7), k

    back = import_nemo(exported.path, tmp_path / "back.pt")
    a, b = torch.load(original, weights_only=True), torch.load(back.path, weights_only=True)
    for key in ("kind", "family", "frontend", "model_config", "num_outputs", "features", "vocab", "format", "version"):
        assert a[key] == b[key], key
    assert list(a["model"]) == list(b["model"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"features": FilterbankConfig(norm_eps=1e-6).to_dict()}, r"features\.norm_eps=1e-06"),
        ({"family": "jasper"}, r"family='jasper'"),
        ({"format": "something/else"}, r"not a model file"),
    ],
)
def test_export_refuses_what_nemo_cannot_hold(tmp_path, changes, match):
    src = write_model_pt(tmp_path / "model.pt", random_model(), **changes)
    with pytest.raises(NemoFormatError, match=match):
        export_nemo(src, tmp_path / "model.nemo")
    assert not (tmp_path / "model.nemo").exists()


def test_export_names_missing_weights(tmp_path):
    state = random_model().state_dict()
    del state["encoder.layers.1.res.0.1.running_var"]
    src = write_model_pt(tmp_path / "model.pt", random_model(), model=state)
    with pytest.raises(NemoFormatError, match=r"missing keys \['encoder\.layers\.1\.res\.0\.1\.running_var'\]"):
        export_nemo(src, tmp_path / "model.nemo")


# ---------------------------------------------------------------- command line


def test_cli_import_and_export(tmp_path, capsys):
    source = random_model(seed=9)
    nemo = make_nemo(tmp_path, source)
    summary = main(["import", str(nemo), str(tmp_path / "a" / "model.pt")])
    assert summary["command"] == "import" and summary["model_config"]["sub_blocks"] == 3
    summary = main(["export", str(tmp_path / "a" / "model.pt"), str(tmp_path / "b" / "model.nemo"), "--gzip"])
    assert summary["num_params"] == sum(p.numel() for p in source.parameters())
    main(["import", str(tmp_path / "b" / "model.nemo"), str(tmp_path / "c" / "model.pt")])
    _, model = load_artifact(tmp_path / "c" / "model.pt")
    torch.testing.assert_close(outputs(model), outputs(source), rtol=0, atol=0)
    assert "model.pt" in capsys.readouterr().out

    bad = nemo_config(copy.deepcopy(TINY_BLOCKS))
    bad["encoder"]["jasper"][4]["separable"] = False
    with pytest.raises(SystemExit) as e:
        main(["import", str(make_nemo(tmp_path, config=bad, name="bad.nemo")), str(tmp_path / "d.pt")])
    assert e.value.code == 2
    assert "encoder.jasper[4].separable" in capsys.readouterr().err


def test_export_is_byte_reproducible(tmp_path):
    import torch as _torch

    from asr_core.models.nemo import write_nemo

    state = {"w": _torch.arange(6.0).reshape(2, 3)}
    for gz in (False, True):
        a = write_nemo(tmp_path / f"a{gz}.nemo", {"k": 1}, state, compress=gz).read_bytes()
        b = write_nemo(tmp_path / f"b{gz}.nemo", {"k": 1}, state, compress=gz).read_bytes()
        assert a == b
