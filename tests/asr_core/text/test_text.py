import pytest

from asr_core.text import ALPHABET, CharVocab, normalize_text, out_of_alphabet


@pytest.mark.parametrize(
    "raw, want",
    [
        ("Hello, World!", "hello world"),
        ("DON'T  stop", "don't stop"),
        ("It\u2019s a well-known café", "it's a well known cafe"),
        ("'quoted' words", "quoted words"),
        ("rock & roll", "rock and roll"),
        ("  \tmany\n spaces ", "many spaces"),
        ('HE SAID "NO"', "he said no"),
    ],
)
def test_normalize(raw, want):
    assert normalize_text(raw) == want


def test_out_of_alphabet_left_for_quarantine():
    t = normalize_text("Room 101")
    assert t == "room 101"
    assert out_of_alphabet(t) == "01"
    assert out_of_alphabet("fine text") == ""


def test_vocab_layout_blank_last():
    v = CharVocab()
    assert len(v.symbols) == 28 and v.symbols[0] == " " and v.symbols[27] == "'"
    assert v.blank == 28 and v.num_outputs == 29
    ids = v.encode("it's")
    assert v.decode(ids + [v.blank]) == "it's"
    with pytest.raises(ValueError, match="'1'"):
        v.encode("a1")


def test_vocab_roundtrip(tmp_path):
    v = CharVocab()
    v.save(tmp_path / "chars.json")
    assert CharVocab.load(tmp_path / "chars.json") == v
    assert "".join(v.symbols) == ALPHABET
