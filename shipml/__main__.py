"""`python -m shipml ...`: the `shipml` command, for launchers that start modules (`torchrun -m shipml train ...`)."""

from shipml.cli import main

if __name__ == "__main__":
    main()
