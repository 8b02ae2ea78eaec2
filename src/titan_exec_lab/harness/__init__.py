"""Processes and feeds for the demo, the benchmarks, the chaos matrix and the integration
tests: `procs` (the one process harness: an instance's configuration, the instance as a
child process, reading it over HTTP), `simproc` (the venue simulator as a child process),
`cluster` (three clustered nats-servers), `feeds` (the stand-in brain's heartbeat and the
book-ticker feed)."""
