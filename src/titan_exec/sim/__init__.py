"""The exchange model: a Binance USDⓈ-M futures look-alike's core, pure and in memory.

- `market`: symbol specifications and the seeded, deterministic price path (pure).
- `engine`: the exchange core: orders, fills, fees, positions, wallet, dead-man switch,
  inspection and state export (pure: time is an argument, no I/O, Decimal money);
  `records`: its data types and their JSON-able forms (pure).

The simulator that serves it over HTTP to real clients (`titan-exec venue-sim`) is the
laboratory's: `titan_exec_lab.sim`.
"""
