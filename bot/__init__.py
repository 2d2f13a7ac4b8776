"""BlueHats bot for Tchap (Matrix)."""

__version__ = "0.1.0"
