"""Captions that follow the voice: which words of a reply the listener has heard so far.

The synthesizers here give no word timings, so each sentence's words are laid along its audio in
proportion to their length (characters, plus one for the gap after each word): right to within a
word, which is what a caption needs.  A word shows once playback reaches its start, so a reply cut
off mid-sentence ends on the word the voice was saying.
"""

from __future__ import annotations

from typing import Iterable


def words_reached(text: str, fraction: float, complete: bool = True) -> list[str]:
    """The words of ``text`` whose start lies within the first ``fraction`` of its audio.  While the
    sentence is still being synthesized (not ``complete``) its length is unknown: its last word waits."""
    words = text.split()
    if fraction <= 0 or not words:
        return []
    weights = [len(word) + 1 for word in words]
    total = sum(weights)
    shown: list[str] = []
    start = 0
    for word, weight in zip(words, weights):
        if start / total >= fraction:
            break
        shown.append(word)
        start += weight
    return shown if complete else shown[: len(words) - 1]


def spoken_text(pieces: Iterable[tuple[str, int, bool]], position: int) -> str:
    """The caption after ``position`` samples of playback: ``pieces`` are (text, samples, complete)
    per sentence, in playing order."""
    out: list[str] = []
    for text, samples, complete in pieces:
        if position <= 0 or samples <= 0:
            break
        out.extend(words_reached(text, min(1.0, position / samples), complete))
        position -= samples
    return " ".join(out)
