"""The chaos matrix (`titan-exec chaos`): a real topology on loopback (three clustered
nats-servers, the venue simulator, the primary and the backup as processes), faults
injected under steady signed intent load, the invariants checked after every run from the
raw streams and the venue (`titan_exec_lab.verify`), failover figures and timeline plots."""
