"""`python -m dlcli` (also the entry point torchrun uses: `torchrun -m dlcli train-mnist …`)."""

from dlcli.cli.app import main

if __name__ == "__main__":
    main()
