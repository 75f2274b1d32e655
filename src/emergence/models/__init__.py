"""emergence.models."""
