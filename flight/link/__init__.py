"""Parts of the link manager (:mod:`flight.subsystems.link`) that live in their own modules:
the operations services (:mod:`flight.link.operations`) and the onboard schedule
(:mod:`flight.link.schedule`)."""
