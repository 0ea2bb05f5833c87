"""The flight subsystems, one OS process each; the registry that finds them by name is
:mod:`flight.core.dictionary`."""
