"""emergence.sampling."""
