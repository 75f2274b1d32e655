"""emergence.estimators."""
