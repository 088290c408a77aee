"""dlcli: the `dl` command-line suite. Importing this package imports nothing heavy."""

__version__ = "0.1.0"
