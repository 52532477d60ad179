"""The memory-management mechanisms, one per file as in the kernel's mm/."""
