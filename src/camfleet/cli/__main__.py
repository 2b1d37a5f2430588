"""``python -m camfleet.cli``."""

from camfleet.cli.main import main

main()
