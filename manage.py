#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys
from pathlib import Path

# Written by scripts/run.sh for development (git-ignored); see config/env.py and docs/configuration.md.
DEV_ENV_FILE = Path(__file__).resolve().parent / ".env"


def main() -> None:
    from config.env import apply_dev_env_file

    if filled := apply_dev_env_file(DEV_ENV_FILE):
        print(f"[development settings from .env: {', '.join(filled)}]", file=sys.stderr)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
