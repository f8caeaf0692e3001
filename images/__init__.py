"""Appliance images: build, per-device provisioning, verified flashing, first boot."""
