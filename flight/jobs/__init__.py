"""The job runner's parts, one concern per module: :mod:`~flight.jobs.model` (a job and how
it advances tick by tick), :mod:`~flight.jobs.store` (the durable queue, checkpoints index
and results in SQLite), :mod:`~flight.jobs.scheduler` (which queued job gets which GPUs and
which running job yields them: priorities, deadlines, preemption, modes) and
:mod:`~flight.jobs.radiation` (ECC error accounting and GPU fencing). The subsystem that
wires them to the bus is :mod:`flight.subsystems.jobs`."""
