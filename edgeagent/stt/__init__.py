"""Speech-to-text engines behind one recognizer contract (``edgeagent.stt.base``)."""
