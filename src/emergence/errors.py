"""The base of every error that tells a user what went wrong and what to do (caught by the CLI)."""


class EmergenceError(RuntimeError):
    """An error whose message names the file or value at fault and the fix."""
