"""The laboratory of titan-execution: everything that exercises, measures or checks the
service and is not the service. The service package (`titan_exec`) never imports it (a
unit test walks its imports); the `titan-exec` command finds the commands below through the
`titan_exec.commands` entry points.

- `sim`: the venue simulator served over HTTP and websocket (`titan-exec venue-sim`), over
  the service's exchange model (`titan_exec.adapters.venue.exchange`);
- `verify`: the one invariant checker over the raw streams and the venue (`titan-exec
  verify`, the demo, the chaos runner, the integration tests, `titan-exec status`);
- `chaos`: the chaos matrix (`titan-exec chaos`);
- `demo`: the scripted end-to-end demo (`titan-exec demo`, `make demo`);
- `bench`: throughput, start-up and poison benchmarks (`titan-exec bench`);
- `harness`: processes and feeds for all of the above and the integration tests: an
  instance and the simulator as child processes, a three-node NATS cluster, the stand-in
  brain and book-ticker feed;
- `cli`: the commands above, each an ``add_parser(subparsers)``.
"""
