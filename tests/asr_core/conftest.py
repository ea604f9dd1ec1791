"""Fixtures shared by the library's tests in several folders."""

from __future__ import annotations

import pytest

from tests.support import rnnt_corpus, rnnt_params


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny transducer trained a few steps through the train stage: (model.pt, corpus folder)."""
    from tasks import train as stage

    tmp = tmp_path_factory.mktemp("rnnt")
    corpus, spm = rnnt_corpus(tmp / "corpus", splits=(("train", 6), ("dev", 4), ("test", 4)))
    params = rnnt_params(tmp, corpus, spm, steps=8)
    stage.main(["--params", str(params), "--out", str(tmp / "models"), "--report", str(tmp / "train.json")])
    return tmp / "models" / "rnnt_test" / "model.pt", corpus
