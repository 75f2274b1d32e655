"""emergence.tracking."""
