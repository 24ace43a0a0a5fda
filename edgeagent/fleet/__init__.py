"""The fleet link over MQTT: status and last will, telemetry with an on-disk spool, remote
config, commands, and Home Assistant discovery.

The daemon uses ``edgeagent.fleet.link.FleetLink`` (``start()``, ``publish_trace(trace)``,
``update_state(**fields)``, ``await stop()``) and implements
``edgeagent.fleet.control.DeviceControl`` for remote commands."""
