"""The fleet link over MQTT: status and last will, telemetry with an on-disk spool, remote
config, commands, and Home Assistant discovery."""
