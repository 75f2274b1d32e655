"""emergence.analysis."""
