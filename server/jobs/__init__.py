"""Named jobs run at most once per interval across every gateway process and host.

Each job has a lease document in the store; a process runs a job only after taking
its lease with one atomic update, so any number of gateways on one database share
the work without repeating one another. Only `server.kernel` is imported here: the
jobs themselves are registered by the composition root."""
