"""Helpers the kernel keeps in lib/."""
