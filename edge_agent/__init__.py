"""The door controller daemon: one per appliance, with or without a screen.

It owns the door (through :mod:`hardware.gpio`), the badge reader, the durable
journal, the credential cache and the network. The kiosk talks to it only
through its local API.
"""
