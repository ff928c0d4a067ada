"""The package version, kept apart so that any module can read it without importing sst."""

__version__ = "0.1.0"
