"""procfs and sysfs files in the kernel's own formats."""
