"""Simulated device drivers (the virtio balloon for free page reporting)."""
