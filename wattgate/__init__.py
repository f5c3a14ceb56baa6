"""wattgate: an inference gateway that meters energy per request and routes by grid carbon."""

__version__ = "0.1.0"
