"""pocketsphinx: small, fast and truly streaming; free-form LM is weak, JSGF grammar mode is strong.

``grammar`` selects the search: a ``.jsgf``/``.gram`` file restricts recognition to a command
grammar (the fast, accurate path for fixed commands); any other file is a keyphrase list
(one ``phrase /threshold/`` per line) for keyword spotting; empty uses the packaged LM.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeagent.stt.base import SttError, Transcript, as_int16


class PocketsphinxRecognizer:
    name = "pocketsphinx"

    def __init__(self, model_dir: Path, grammar: str = ""):
        from pocketsphinx import Decoder

        model_dir = Path(model_dir)
        hmm, lm, dic = model_dir / "en-us", model_dir / "en-us.lm.bin", model_dir / "cmudict-en-us.dict"
        for part in (hmm, lm, dic):
            if not part.exists():
                raise SttError(f"pocketsphinx model incomplete: {part} is missing; run `edgeagent models install`")
        kwargs: dict = {"hmm": str(hmm), "dict": str(dic), "loglevel": "FATAL"}
        if grammar:
            path = Path(grammar)
            if not path.is_file():
                raise SttError(f"stt.grammar: {path} is not a file (a JSGF grammar or a keyphrase list)")
            kwargs["jsgf" if path.suffix in (".jsgf", ".gram") else "kws"] = str(path)
        else:
            kwargs["lm"] = str(lm)
        try:
            self._decoder = Decoder(**kwargs)
        except (RuntimeError, ValueError) as exc:
            raise SttError(f"pocketsphinx could not load {model_dir} / grammar {grammar!r}: {exc}") from None
        self._active = False
        self._partial = ""

    def start(self) -> None:
        self.reset()
        self._decoder.start_utt()
        self._active = True

    def feed(self, samples: np.ndarray) -> str | None:
        if not self._active:
            self.start()
        self._decoder.process_raw(as_int16(samples).tobytes(), False, False)
        hyp = self._decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if text and text != self._partial:
            self._partial = text
            return text
        return None

    def finish(self) -> Transcript:
        if not self._active:
            return Transcript("", None)
        self._decoder.end_utt()
        self._active = False
        self._partial = ""
        hyp = self._decoder.hyp()
        # No confidence: without a lattice posterior pass hyp.prob is ~0 (exp -> 1.0) and would mislead.
        return Transcript(hyp.hypstr.strip() if hyp is not None else "", None)

    def reset(self) -> None:
        if self._active:
            self._decoder.end_utt()
        self._active = False
        self._partial = ""

    def close(self) -> None:
        self.reset()
