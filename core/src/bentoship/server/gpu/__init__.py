"""GPU placement: the machine's GPUs (inventory) and their allocation to revisions (allocator)."""
