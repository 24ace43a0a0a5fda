"""The kiosk's screen: a local web page of the agent's state, live captions and controls."""
