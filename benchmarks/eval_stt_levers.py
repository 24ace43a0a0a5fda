"""The transcript levers, each a change of ``[stt]`` settings, measured on the same utterances
(benchmarks.eval_stt: heard after the configured wake detector, as the daemon hears them).

    python -m benchmarks.eval_stt_levers [--split tune] [--every 2] [--variants a,b]

Prints WER and finish() P50/P90 per variant; choose on the tune half, quote the held-out half.
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks.eval_set import positives
from benchmarks.eval_stt import hear_all, wer
from benchmarks.eval_wake import conditioner
from benchmarks.eval_tables import table
from benchmarks.stats import percentile
from edgeagent.config import load_config

VOCABULARY = "Alexa, Okay Nabu, Hey Jarvis. Timer, alarm, volume up, volume down, lights, minutes."
# variants that change how the utterance is cut rather than [stt]: pre-roll reaching back into the
# wake word (lookback_ms) with the wake phrase then dropped from the transcript
CUTS = {"tiny.en lookback 500 ms + wake phrase dropped": 500, "tiny.en lookback 250 ms + wake phrase dropped": 250}
ORACLE = "tiny.en on the question alone (oracle cut)"
FILTERS = {"tiny.en after WebRTC noise suppression": "ns", "tiny.en after WebRTC noise suppression + AGC": "ns+agc",
           "tiny.en after WebRTC NS level 2 + AGC": "ns2+agc", "tiny.en after WebRTC NS level 3 + AGC": "ns3+agc",
           "tiny.en after WebRTC AGC alone": "agc"}
VARIANTS: dict[str, dict[str, object]] = {
    ORACLE: {},
    "tiny.en beam 5": {},
    "tiny.en beam 5 on the raw microphone": {"clean_audio": False},
    "tiny.en beam 8": {"beam_size": 8},
    "tiny.en after the Silero VAD's endpoint": {"vad.engine": "silero"},
    "tiny.en beam 5 on a 30 s window": {"window_s": 0.0},
    "tiny.en beam 1": {"beam_size": 1},
    "tiny.en + vocabulary prompt": {"prompt": VOCABULARY},
    "base beam 5": {"whisper_model": "base"},
    "base + vocabulary prompt": {"whisper_model": "base", "prompt": VOCABULARY},
    "base beam 1": {"whisper_model": "base", "beam_size": 1},
}


def without_wake_phrase(text: str, word: str) -> str:
    """The transcript less a leading wake phrase (or what Whisper made of it: "Alexa," "Alex, a")."""
    import difflib
    import re

    from benchmarks.eval_text import WAKE_PHRASES

    phrase = WAKE_PHRASES[word].lower().replace(" ", "")
    tokens = list(re.finditer(r"[A-Za-z']+", text))
    ratio = {n: difflib.SequenceMatcher(None, "".join(t.group().lower() for t in tokens[:n]), phrase).ratio()
             for n in (1, 2) if len(tokens) > n}
    n = max(ratio, key=lambda k: (ratio[k], -k), default=0)
    return text[tokens[n].start():] if n and ratio[n] >= 0.75 else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("tune", "heldout"), default="tune")
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--variants", default=",".join([*VARIANTS, *CUTS, *FILTERS]))
    args = parser.parse_args(argv)
    os.nice(10)
    clips = positives(args.split, load_config(None, env={}).wake.models[0], with_question=True)[::args.every]
    rows = []
    for name in args.variants.split(","):
        config = load_config(None, env={})
        config.stt.speculate_after_ms, config.stt.partial_interval_s = 0, 0.0
        for key, value in VARIANTS.get(name, {}).items():  # "key" is in [stt]; "section.key" elsewhere
            section, _, field = key.rpartition(".")
            setattr(getattr(config, section or "stt"), field, value)
        started = time.monotonic()
        lookback = CUTS.get(name, 0)
        filt = FILTERS.get(name)
        heard = hear_all(config, clips, lookback_ms=lookback, oracle_cut=name == ORACLE,
                         condition=(lambda f=filt: conditioner(f)) if filt else None,
                         clean=(lambda t: without_wake_phrase(t, config.wake.models[0])) if lookback else (lambda t: t))
        finish = [h.finish_s * 1000 for h in heard]
        rows.append([name, wer(heard), percentile(finish, 0.5), percentile(finish, 0.9), len(heard)])
        print(f"  {name}: WER {wer(heard):.3f}, finish P50 {rows[-1][2]:.0f} ms ({time.monotonic() - started:.0f} s)",
              flush=True)
    print(table(["variant", "WER", "finish P50 ms", "finish P90 ms", "utterances"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
