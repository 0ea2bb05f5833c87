"""The ground CLI as an operator runs it, in a test's own process: ``run`` parses a command
line the way ``flight`` does and runs it."""

import argparse

from flight.ground.cli import main as cli


def run(*argv: str, command: str = "ground") -> int:
    parser = argparse.ArgumentParser(prog="flight")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    cli.add_keys_parser(sub)
    args = parser.parse_args([command, *argv])
    return args.func(args)
