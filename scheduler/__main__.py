"""`python -m scheduler` runs the daemon, exactly like `sms-outbox run`."""

import sys

from scheduler.cli import main

sys.exit(main(["run", *sys.argv[1:]]))
