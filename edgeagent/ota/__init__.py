"""Over-the-air updates of the OS image: signed RAUC bundles into the inactive A/B slot.

``download`` fetches a bundle over HTTP(S), resuming where a broken transfer stopped, and checks
its sha256; ``rauc`` drives the RAUC service (which checks the bundle's signature against the
image's keyring and writes the inactive slot); ``updater`` is the device's state machine behind
the fleet command ``update``: progress on the state topic, a reboot only when the agent is idle,
and after the reboot the new slot is marked good only once the daemon is READY and connected to
the broker.  The image's ``edgeagent-update-trial`` rolls back when that does not happen in time.
"""
