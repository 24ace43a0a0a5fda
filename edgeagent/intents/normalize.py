"""A transcript as the templates expect it: lower case, no punctuation, numbers as digits.

STT writes "Set a 10-minute timer.", "7:30 a.m.", "1,000 hours", "minus 5", "50%"; the templates
say ``{minutes} minute timer``, ``{hour} {minute} {period}``, ``{volume} percent``.
"""

from __future__ import annotations

import re

_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"[\u2018\u2019]", "'"),
    (r"\b([ap])\.\s?m\.?", r"\1m"),  # a.m. -> am
    (r"(\d)\s?([ap]m)\b", r"\1 \2"),  # 7am -> 7 am
    (r"\b(\d{1,2})[:.](\d{2})\b", r"\1 \2"),  # 7:30 -> 7 30 (a clock time, not a decimal)
    (r"\b(1[0-2]|[1-9])([0-5]\d)(?= ?(?:am|pm|a m|p m|in the|at night|tonight|o'clock)\b)", r"\1 \2"),  # 730 am
    (r"(\d),(\d{3})\b", r"\1\2"),  # 1,000 -> 1000
    (r"(\d)\s?%", r"\1 percent"),
    (r"\b(minus|negative)\s+(\d)", r"-\2"),
    (r"\ba (hundred|thousand)\b", r"one \1"),
    (r"(?<=[a-z0-9])-(?=[a-z0-9])", " "),  # ten-minute, 10-minute -> two words
    (r"[^\w\s'\-]", " "),  # punctuation (keeps apostrophes and a leading minus)
    (r"(?<!\w)-(?!\d)|(?<=\w)-", " "),  # a dash that is no minus sign
    (r"(^|\s)'+|'+(\s|$)", r"\1\2"),  # quotes around words
    (r"\s+", " "),
))


def normalize(text: str) -> str:
    text = text.lower()
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text.strip()
