"""testbed: a network-censorship emulator for testing how calls survive DPI."""

__version__ = "0.1.0"
