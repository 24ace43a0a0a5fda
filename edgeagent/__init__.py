"""edgeagent: a streaming voice-agent daemon for Raspberry-Pi-class smart speakers."""

__version__ = "0.1.0"
