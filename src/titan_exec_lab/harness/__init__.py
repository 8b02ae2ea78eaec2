"""Processes and feeds for the demo, the benchmarks, the chaos matrix and the integration
tests: `instproc` (an instance as a child process), `simproc` (the venue simulator as a
child process), `cluster` (three clustered nats-servers), `feeds` (the stand-in brain's
heartbeat and the book-ticker feed)."""
