"""``python -m projected_gan`` = the ``projected-gan`` command."""

from projected_gan.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
