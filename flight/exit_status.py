"""Exit statuses of every ``flight`` command, in one place: 0 done, 1 failed (a run that did
not complete, a scenario that failed its expectations, a command the satellite refused), 2
usage (bad arguments or a malformed file: nothing ran), 130 interrupted by Ctrl-C (the shell's
128 + SIGINT convention)."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
