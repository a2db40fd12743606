"""bentoship."""
