"""Doing things: sentences matched before the LLM, built-in skills (timers, time, volume, stop),
home-control intents published over MQTT, and the same skills as LLM tools."""
