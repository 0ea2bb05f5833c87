"""Shared pytest options: ``--hal ENDPOINT`` points the HIL suite at a rig."""


def pytest_addoption(parser):
    parser.addoption("--hal", default=None, metavar="ENDPOINT",
                     help="HAL endpoint of a rig for tests/hil (default: start a sim_hw of our own)")
