"""Cuts a token stream into speakable chunks as early as possible.

A chunk ends at a sentence end, or at a clause boundary once it is long enough to sound
natural, so TTS can start on the first clause while the LLM is still writing.  It never cuts
inside numbers ("3.14"), abbreviations ("Dr.", "e.g.", "U.S.") or initials, and it removes what
a speaker cannot say: markdown, links, emoji.
"""

from __future__ import annotations

import re
import unicodedata

ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "u.s", "u.k", "a.m", "p.m",
    "inc", "ltd", "co", "approx", "dept", "mt", "ft",
}
# Also ordinary words ("The answer is no."): abbreviations only before a number ("No. 5", "Jan. 3").
NUMBER_ABBREVIATIONS = {
    "no", "nos", "fig", "vol", "est", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec",
}
SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*\s")
CLAUSE_END = re.compile(r"[,;:—–]\s")
MARKDOWN = [
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # [text](url) -> text
    (re.compile(r"`{1,3}([^`]*)`{1,3}"), r"\1"),
    (re.compile(r"(?<!\w)(\*\*|__|\*|_|~~)(?=\S)(.+?)(?<=\S)\1(?!\w)"), r"\2"),  # not inside snake_case
    (re.compile(r"^\s{0,3}#{1,6}\s*", re.M), ""),
    (re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+", re.M), ""),
    (re.compile(r"https?://\S+"), "a link"),
]


def speakable(text: str) -> str:
    """Text with markdown, emoji and symbols a voice cannot say removed, whitespace collapsed."""
    for pattern, replacement in MARKDOWN:
        text = pattern.sub(replacement, text)
    text = "".join(c for c in text if not _is_emoji(c))
    text = text.replace("*", "").replace("#", "")
    text = re.sub(r"\s+([.,!?;:])", r"\1", text)  # "today 😀!" -> "today!"
    return re.sub(r"\s+", " ", text).strip()


def _is_emoji(char: str) -> bool:
    code = ord(char)
    return (unicodedata.category(char) in ("So", "Cs", "Co") or 0x1F000 <= code <= 0x1FAFF
            or 0x2600 <= code <= 0x27BF or code in (0xFE0F, 0x200D))


class SentenceChunker:
    def __init__(self, min_clause_chars: int = 40, first_min_clause_chars: int = 16):
        self.min_clause_chars = min_clause_chars
        self.first_min_clause_chars = first_min_clause_chars  # the first chunk sets time to first audio
        self._emitted = False
        self._buffer = ""

    def push(self, token: str) -> list[str]:
        """Add generated text; returns the chunks that are now complete."""
        self._buffer += token
        chunks = []
        while (cut := self._next_cut()) is not None:
            chunk, self._buffer = self._buffer[:cut], self._buffer[cut:]
            if spoken := speakable(chunk):
                chunks.append(spoken)
                self._emitted = True
        return chunks

    def flush(self) -> list[str]:
        """The rest, at the end of the reply."""
        rest, self._buffer = self._buffer, ""
        spoken = speakable(rest)
        return [spoken] if spoken else []

    def _next_cut(self) -> int | None:
        for match in SENTENCE_END.finditer(self._buffer):
            if not self._is_false_end(match.start()):
                return match.end()
        minimum = self.min_clause_chars if self._emitted else self.first_min_clause_chars
        if len(speakable(self._buffer)) >= minimum:
            for match in CLAUSE_END.finditer(self._buffer):
                if match.start() >= minimum // 2 and not self._inside_number(match.start()):
                    return match.end()
        return None

    def _is_false_end(self, index: int) -> bool:
        """A period that ends an abbreviation or an initial, not a sentence."""
        if self._buffer[index] != ".":
            return False
        word = re.search(r"([A-Za-z.]+)$", self._buffer[:index])
        if word:
            stem = word.group(1).lower().strip(".")
            if stem in ABBREVIATIONS or (len(stem) == 1 and stem.isalpha() and word.group(1)[0].isupper()):
                return True
            if stem in NUMBER_ABBREVIATIONS:
                after = self._buffer[index + 1:].lstrip()
                return not after or after[0].isdigit()  # not known yet: wait for the next token
        return False

    def _inside_number(self, index: int) -> bool:
        """'1,000' is split by nothing: a comma between digits is part of the number."""
        return index > 0 and self._buffer[index - 1].isdigit() and index + 1 < len(self._buffer) \
            and self._buffer[index + 1].isdigit()
