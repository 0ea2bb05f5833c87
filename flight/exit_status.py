"""Exit statuses of every ``flight`` command, in one place: 0 done, 1 failed (a run that did
not complete, a scenario that failed its expectations, a command the satellite refused), 2
usage (bad arguments or a malformed file: nothing ran), 130 interrupted by Ctrl-C (the shell's
128 + SIGINT convention), 141 standard output closed by its reader before the command was done
(``flight dict | head``: what a Unix filter killed by SIGPIPE returns, 128 + 13)."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_OUTPUT_CLOSED = 0, 1, 2, 130, 141
