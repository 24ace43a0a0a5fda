"""One module per ``edgeagent`` sub-command (discovered by ``edgeagent.cli``)."""
