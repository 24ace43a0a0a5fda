"""Transcript -> intent, before any LLM: hassil over the built-in, operator and Home Assistant
templates, in that order, with a second try after correcting misheard words.

The fuzzy step is ours (hassil matches words exactly).  Only when the exact text matches nothing:
a word no template knows is replaced by the most similar word that one does (rapidfuzz ratio >=
``intents.fuzzy_cutoff``) or by what Whisper is known to write for it ("kitchen life"); if that
still matches nothing, up to two misheard leading words are dropped ("Shaker timer for 10
minutes"; built-in commands only), never when the request is negated ("don't set a timer").  The match's confidence then
says how much was changed.  A correction is kept only if the result matches a template, so a
question for the LLM reaches it as it was said.  Compiled once per config; the first recognition
of each set is paid at load.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from hassil import Intents, RecognizeResult, TextSlotList, recognize_best
from rapidfuzz import fuzz, process

from edgeagent.config import IntentsConfig
from edgeagent.intents.normalize import normalize
from edgeagent.intents.templates import builtin_data, custom_data, home_data, vocabulary

log = logging.getLogger("edgeagent.intents")

MIN_FUZZY_WORD = 3  # shorter words ("a", "on", "to") are too alike to correct safely
# Whisper tiny.en's usual slips on the templates' words (seen on generated speech, bench_intents)
SLIPS = {"life": "light", "lite": "light", "lice": "lights", "lites": "lights", "cancelled": "cancel",
         "canceled": "cancel", "tyler's": "timers", "timer's": "timers"}
MAX_DROPPED = 2  # misheard leading words ("shaker timer" for "set a timer")
DROP_PENALTY = 0.15  # confidence lost per dropped word
NEGATIONS = {"don't", "dont", "not", "never", "no", "didn't", "won't", "shouldn't"}


@dataclass(frozen=True)
class IntentMatch:
    name: str
    slots: dict[str, Any]
    confidence: float  # 1.0: every word as in a template; less: words were corrected
    text: str  # the normalized (and corrected) text that matched
    source: str  # builtin | custom | home
    match_ms: float = 0.0


@dataclass
class _Set:
    source: str
    intents: Intents
    skip_words: list[str] = field(default_factory=list)


class IntentMatcher:
    def __init__(self, config: IntentsConfig):
        home = home_data()
        self._builtin = _Set("builtin", Intents.from_dict(builtin_data()), home["skip_words"])
        self._home = _Set("home", Intents.from_dict(home), home["skip_words"])
        self._custom: _Set | None = None
        self._base_vocabulary = vocabulary(builtin_data(), home)
        self.configure(config)

    def configure(self, config: IntentsConfig) -> None:
        """Live config: rooms, device names, operator sentences, fuzziness (recompiled here, not per turn)."""
        self.config = config
        self._lists = {"area": TextSlotList.from_strings(config.areas),
                       "name": TextSlotList.from_tuples([named_device(entry) for entry in config.names],
                                                        allow_template=False),
                       "floor": TextSlotList.from_strings([])}
        self._context = {"area": config.room} if config.room else {}
        custom = custom_data(config.sentences) if config.sentences else None
        self._custom = _Set("custom", Intents.from_dict(custom), custom["skip_words"]) if custom else None
        names = tuple(named_device(entry)[0] for entry in config.names)
        self._vocabulary = sorted(self._base_vocabulary | vocabulary(custom or {}, extra=tuple(config.areas) + names))
        self._known = set(self._vocabulary)
        self.warm()

    def warm(self) -> None:
        """hassil builds its number tries on first use (~0.2 s): pay that now, not in a turn."""
        for text in ("set a timer for ten minutes", "turn on the kitchen lights", "what time is it"):
            self.match(text)

    def match(self, transcript: str) -> IntentMatch | None:
        start = time.perf_counter()
        text = normalize(transcript)
        if not text:
            return None
        found, confidence = self._recognize(text), 1.0
        if found is None and self.config.fuzzy_cutoff < 100:
            found, text, confidence = self._recognize_misheard(text)
        if found is None:
            return None
        source, result = found
        slots = {name: _plain(entity.value) for name, entity in result.entities.items()}
        return IntentMatch(result.intent.name, slots, round(confidence, 3), text, source,
                           round((time.perf_counter() - start) * 1000, 2))

    def _sets(self) -> list[_Set]:
        return [self._builtin] + ([self._custom] if self._custom else []) + [self._home]

    def _recognize(self, text: str, builtin_only: bool = False) -> tuple[str, RecognizeResult] | None:
        for intent_set in self._sets()[:1] if builtin_only else self._sets():
            result = recognize_best(text, intent_set.intents, slot_lists=self._lists, skip_words=intent_set.skip_words,
                                    intent_context=self._context, language="en")
            if result is not None:
                return intent_set.source, result
        return None

    def _recognize_misheard(self, text: str) -> tuple[tuple[str, RecognizeResult] | None, str, float]:
        corrected, score = self._correct(text)
        words = corrected.split()
        negated = bool(NEGATIONS & set(words[:MAX_DROPPED + 1]))
        for dropped in range(0 if corrected != text else 1, 1 if negated else MAX_DROPPED + 1):
            candidate = " ".join(words[dropped:])
            if dropped and len(words) - dropped < 2:
                break
            found = self._recognize(candidate, builtin_only=dropped > 0)  # a dropped verb: only the built-ins
            if found is not None:
                return found, candidate, max(0.0, score - DROP_PENALTY * dropped)
        return None, text, 0.0

    def _correct(self, text: str) -> tuple[str, float]:
        """Each unknown word replaced by the closest template word; the lowest similarity is the confidence."""
        words, worst = text.split(), 100.0
        for i, word in enumerate(words):
            if word in SLIPS:
                words[i], worst = SLIPS[word], min(worst, self.config.fuzzy_cutoff)
                continue
            if word in self._known or len(word) < MIN_FUZZY_WORD or word.lstrip("-").isdigit():
                continue
            best = process.extractOne(word, self._vocabulary, scorer=fuzz.ratio, score_cutoff=self.config.fuzzy_cutoff)
            if best is not None:
                words[i], worst = best[0], min(worst, best[1])
        return " ".join(words), worst / 100.0


def named_device(entry: str) -> tuple[str, str, dict[str, str]]:
    """``intents.names`` entry -> hassil list value: "tv" is a switch, "scene:movie night" a scene,
    "light:reading lamp" a light (Home Assistant's sentences ask what kind of thing a name is)."""
    domain, sep, name = entry.partition(":")
    if not sep:
        domain, name = "switch", entry
    name = name.strip().lower()
    return name, name, {"domain": domain.strip().lower()}


def _plain(value: Any) -> Any:
    """hassil gives 10.0 for "10" and 10 for "ten": whole numbers as int, so slots compare and print alike."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
