import pytest

from edgeagent.tts.chunker import SentenceChunker, speakable


def chunks_of(text: str, token_size: int = 3) -> list[str]:
    chunker = SentenceChunker()
    out = []
    for i in range(0, len(text), token_size):
        out += chunker.push(text[i : i + token_size])
    return out + chunker.flush()


@pytest.mark.parametrize("text, expected", [
    ("Hello there. How are you?", ["Hello there.", "How are you?"]),
    ("Pi is 3.14 and e is 2.72. Nice!", ["Pi is 3.14 and e is 2.72.", "Nice!"]),
    ("Dr. Smith met Mr. Jones in the U.S. today. Then left.", ["Dr. Smith met Mr. Jones in the U.S. today.", "Then left."]),
    ("Fruits, e.g. apples, are good. Yes.", ["Fruits, e.g. apples,", "are good.", "Yes."]),  # early first chunk
    ("It costs 1,000 dollars. Ok", ["It costs 1,000 dollars.", "Ok"]),
    ("J. R. R. Tolkien wrote it. Great.", ["J. R. R. Tolkien wrote it.", "Great."]),
    ("**Bold** and *italic* and `code`. Done.", ["Bold and italic and code.", "Done."]),
    ("# Title\n- first item\n- second item", ["Title first item second item"]),
    ("Sunny today ☀️😀! See [the forecast](http://x.y/z).", ["Sunny today!", "See the forecast."]),
    ("Well, that is a rather long opening clause, so we may cut here and keep going", 
     ["Well, that is a rather long opening clause,", "so we may cut here and keep going"]),
    ("Short, no cut.", ["Short, no cut."]),
    ("Wait... what? Really!", ["Wait...", "what?", "Really!"]),
    ("Run make_test_data now.", ["Run make_test_data now."]),
    ("The answer is no. Sorry about that.", ["The answer is no.", "Sorry about that."]),
    ("See No. 5 on Jan. 3 please. Ok.", ["See No. 5 on Jan. 3 please.", "Ok."]),
])
def test_chunk_table(text, expected):
    assert chunks_of(text) == expected


def test_only_the_first_chunk_is_cut_at_a_short_clause():
    assert chunks_of("Sure thing, friend, here it is, as you asked, right now.") == \
        ["Sure thing,", "friend, here it is, as you asked,", "right now."]


def test_first_chunk_comes_before_the_reply_ends():
    chunker = SentenceChunker()
    assert chunker.push("Paris is the capital") == []
    assert chunker.push(" of France. It is") == ["Paris is the capital of France."]
    assert chunker.flush() == ["It is"]


def test_speakable_drops_what_cannot_be_said():
    assert speakable("🎉🎉") == ""
    assert speakable("see https://example.com now") == "see a link now"
