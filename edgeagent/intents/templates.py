"""The sentence templates, in hassil's format: the built-in skills' own (sentences/en.yaml), Home
Assistant's English home-control intents (the home-assistant-intents package), and an operator's
(``intents.sentences``), each compiled once into ``hassil.Intents``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

BUILTIN_YAML = Path(__file__).resolve().parent / "sentences" / "en.yaml"
# HA intents the device answers itself (or that make no sense without HA's own UI): never published
NOT_HOME = {"HassStartTimer", "HassCancelTimer", "HassCancelAllTimers", "HassTimerStatus", "HassIncreaseTimer",
            "HassDecreaseTimer", "HassPauseTimer", "HassUnpauseTimer", "HassGetCurrentTime", "HassGetCurrentDate",
            "HassSetVolume", "HassSetVolumeRelative", "HassMediaPlayerMute", "HassMediaPlayerUnmute",
            "HassNevermind", "HassBroadcast", "HassRespond"}
HOME_LISTS = ("area", "name", "floor")  # filled from the config: the rooms and devices of this home


class TemplateError(ValueError):
    """A sentence template does not parse or names a list or rule that does not exist."""


@functools.cache
def builtin_data() -> dict[str, Any]:
    return yaml.safe_load(BUILTIN_YAML.read_text())


BUILTIN_INTENTS = frozenset(builtin_data()["intents"]) | NOT_HOME


@functools.cache
def home_data() -> dict[str, Any]:
    """Home Assistant's English intents minus the ones the device handles itself."""
    from home_assistant_intents import get_intents

    data = get_intents("en")
    return {**data, "intents": {name: v for name, v in data["intents"].items() if name not in NOT_HOME}}


def custom_data(sentences: Mapping[str, list[str]]) -> dict[str, Any]:
    """Operator intents as a hassil document that may use HA's lists ({area}, {brightness}) and rules (<turn>)."""
    home = home_data()
    return {"language": "en", "skip_words": home["skip_words"], "lists": home["lists"],
            "expansion_rules": home["expansion_rules"],
            "intents": {name: {"data": [{"sentences": list(templates)}]} for name, templates in sentences.items()}}


def check_template(template: str) -> None:
    """Raise TemplateError unless ``template`` parses and every list and rule it uses exists."""
    from hassil import ListReference, RuleReference, parse_sentence
    from hassil.parser import ParseError

    try:
        sentence = parse_sentence(template)
    except (ParseError, ValueError, IndexError) as exc:
        raise TemplateError(f"not a valid sentence template: {exc}") from None
    home = home_data()
    for item in _walk(sentence.expression):
        if isinstance(item, ListReference) and item.list_name not in home["lists"] and item.list_name not in HOME_LISTS:
            raise TemplateError(f"unknown list {{{item.list_name}}}")
        if isinstance(item, RuleReference) and item.rule_name not in home["expansion_rules"]:
            raise TemplateError(f"unknown rule <{item.rule_name}>")


def _walk(expression: Any) -> Iterator[Any]:
    yield expression
    for item in getattr(expression, "items", ()):
        yield from _walk(item)


def vocabulary(*documents: Mapping[str, Any], extra: tuple[str, ...] = ()) -> frozenset[str]:
    """Every word the templates can match literally: what a misheard word is corrected towards."""
    import re

    texts: list[str] = list(extra)
    for doc in documents:
        for intent in doc.get("intents", {}).values():
            for data in intent.get("data", []):
                texts.extend(data.get("sentences", []))
        texts.extend(doc.get("expansion_rules", {}).values())
        for values in doc.get("lists", {}).values():
            for value in values.get("values", []) if isinstance(values, dict) else []:
                texts.append(value["in"] if isinstance(value, dict) else str(value))
    words: set[str] = set()
    for text in texts:
        text = re.sub(r"\{[^}]*\}|<[^>]*>", " ", text)  # slot and rule names are not words
        text = re.sub(r"(\w+)\[(\w+)\]", r"\1 \1\2", text)  # minute[s]: both words
        words.update(w for w in re.findall(r"[a-z][a-z']*", text.lower()) if len(w) > 1)
    return frozenset(words)


def home_intent_names(config: Any) -> list[str]:
    """Every intent the device publishes on ``{p}/intent`` (HA's home intents, then the operator's)."""
    return sorted(home_data()["intents"]) + sorted(config.sentences)
