"""One entry point per dvc.yaml stage: read params, call the library, write outputs atomically."""
