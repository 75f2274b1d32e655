"""emergence.sae."""
