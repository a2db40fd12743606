"""flytekit plugin for bentoship."""
