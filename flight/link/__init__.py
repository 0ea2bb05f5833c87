"""Parts of the link manager (:mod:`flight.subsystems.link`) that live in their own modules:
the operations services (:mod:`flight.link.operations`), the onboard schedule
(:mod:`flight.link.schedule`) and the TCP server of the space link
(:mod:`flight.link.stream_server`)."""
