"""`titan-exec bench`: `throughput` (intents against the raw JetStream limits), `startup`
(`--startup`: newest snapshot + tail against the length of history), `poison` (`--poison`:
hostile bursts against the active)."""
