import pytest

from asr_core.data.items import SourceItem, read_index, write_index
from asr_core.io import atomic_path, atomic_write_json, read_jsonl, write_jsonl


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_path_keeps_suffix(tmp_path):
    with atomic_path(tmp_path / "a.flac") as tmp:
        assert tmp.suffix == ".flac" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "a.flac").read_bytes() == b"x"


def test_jsonl_roundtrip_and_errors(tmp_path):
    p = tmp_path / "m.jsonl"
    assert write_jsonl(p, [{"a": 1}, {"b": "é"}]) == 2
    assert list(read_jsonl(p)) == [{"a": 1}, {"b": "é"}]
    p.write_text('{"a": 1}\n{broken\n')
    with pytest.raises(ValueError, match="m.jsonl:2"):
        list(read_jsonl(p))
    atomic_write_json(tmp_path / "x.json", {"k": [1]})
    assert (tmp_path / "x.json").read_text().startswith("{")


def test_index_roundtrip_and_unknown_field(tmp_path):
    items = [SourceItem("u1", "train", "a/u1.flac", "hi", "spk", 0.5, 1.25)]
    write_index(tmp_path / "index.jsonl", items)
    assert list(read_index(tmp_path / "index.jsonl")) == items
    assert items[0].resolve_audio(tmp_path) == tmp_path / "a/u1.flac"
    write_jsonl(tmp_path / "bad.jsonl", [{"utt_id": "u", "split": "t", "audio": "a", "text": "t", "colour": 1}])
    with pytest.raises(ValueError, match=r"bad.jsonl:1.*colour"):
        list(read_index(tmp_path / "bad.jsonl"))
