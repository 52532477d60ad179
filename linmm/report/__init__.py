"""Reports of what the memory manager did."""
