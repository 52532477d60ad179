"""Python ports of the kernel's tools/ programs that read the model's /proc and /sys."""
