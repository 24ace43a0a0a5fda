"""What the evaluation's speakers say: wake phrases, the questions after them, and an hour-plus of
ordinary sentences that contain no wake word.

The ordinary sentences come from Debian's ``fortunes`` package (BSD fortune cookies: quotations,
jokes, proverbs; /usr/share/games/fortunes), a packaged corpus of everyday English that nobody wrote
for this project.  The questions are what people ask a speaker; half of them are kept for tuning and
half held out, like the voices and the noises (see benchmarks.eval_set).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes")
# files of plain prose (no ASCII art, code, poems in odd layouts, or offensive ones: those are a separate package)
FORTUNE_FILES = ("people", "wisdom", "literature", "humorists", "platitudes", "science", "work", "food", "kids",
                 "love", "education", "sports", "pets", "miscellaneous", "fortunes", "politics", "medicine",
                 "cookie", "men-women", "law", "drugs", "magic", "news", "riddles")

WAKE_PHRASES = {"okay_nabu": "Okay Nabu", "hey_jarvis": "Hey Jarvis", "alexa": "Alexa",
                "hey_mycroft": "Hey Mycroft", "hey_rhasspy": "Hey Rhasspy"}
WAKE_TOKENS = ("nabu", "jarvis", "alexa", "mycroft", "rhasspy")

# near misses a detector must not take for a wake word; spoken in the negative streams
HARD_NEGATIVES = [
    "Okay, now boot it up.", "Okay, no boo.", "Hey, Travis, how are you?", "Hey, Mike, are you coming?",
    "Alex said the car was ready.", "I will ask Lexie about it.", "Okay, nobody move.", "Hey, Jarred!",
    "A cabana by the sea.", "Hey, my crow is back.", "Okay, but not today.", "Hey there, Mister Craft.",
    "Elects a new mayor.", "Okay Google, what time is it?", "Hey Siri, play music.", "Hey Jasmine, look.",
    "Okay, Nathan, go ahead.", "Hey, rasp berry pie.", "I need a break, okay?", "Hey, Jarvis Street is closed.",
]

QUESTIONS_TUNE = [
    "What is the capital of France?", "Set a timer for ten minutes.", "Turn the volume down.",
    "What time is it?", "Will it rain tomorrow?", "Play some jazz in the kitchen.",
    "How many grams are in a pound?", "Turn off the living room lights.", "Stop the timer.",
    "What is the weather like today?", "Remind me to call my mother at six.", "Set the volume to five.",
    "How far away is the moon?", "Who wrote Romeo and Juliet?", "Cancel the alarm.",
    "What is two plus two?", "Turn on the bedroom lamp.", "How long is left on my timer?",
    "Tell me a joke.", "What day is it today?", "Add milk to the shopping list.",
    "How do you spell necessary?", "Pause the music.", "What is the capital of Spain?",
]
QUESTIONS_HELDOUT = [
    "What is the capital of Germany?", "Set a timer for twenty minutes.", "Turn the volume up.",
    "What is the temperature outside?", "Is it going to snow this weekend?", "Play the news.",
    "How many days are in a leap year?", "Dim the lights in the hallway.", "Turn it down a little.",
    "When does the sun set today?", "Wake me up at seven tomorrow.", "Mute the speaker.",
    "How tall is Mount Everest?", "Who painted the Mona Lisa?", "Start a timer for five minutes.",
    "What is ten times twelve?", "Open the garage door.", "How much time is left on the timer?",
    "What is the capital of Italy?", "What's the date today?", "Put eggs on my shopping list.",
    "How do you say thank you in French?", "Skip this song.", "What is the capital of Japan?",
]


def fortune_sentences() -> list[str]:
    """Prose fortunes as spoken sentences: one per cookie, 4-40 words, no wake word, stable order."""
    if not FORTUNES.is_dir():
        raise RuntimeError(f"{FORTUNES} not found: apt install fortunes (make install does)")
    out: list[str] = []
    for name in FORTUNE_FILES:
        path = FORTUNES / name
        if not path.exists():
            continue
        for cookie in path.read_text(errors="replace").split("\n%\n"):
            text = re.sub(r"\s+", " ", cookie.split("\t\t--")[0].split(" -- ")[0]).strip()
            if not re.fullmatch(r"[A-Za-z0-9 ,.;:'\"!?()-]+", text):
                continue  # layout, code, foreign scripts: not everyday speech
            words = text.split()
            if 4 <= len(words) <= 40 and not any(t in text.lower() for t in WAKE_TOKENS):
                out.append(text)
    return out


def split_sentences(seed: int = 19) -> tuple[list[str], list[str]]:
    """Fortune sentences shuffled once (fixed seed) and cut in two: (tune, held out)."""
    sentences = fortune_sentences()
    random.Random(seed).shuffle(sentences)
    half = len(sentences) // 2
    return sentences[:half], sentences[half:]
