"""The ``camfleet`` command line."""
