"""The exchange model: one USDⓈ-M futures account in miniature (pure: no I/O, clock or
randomness; time is an argument; Decimal money).

The paper venue (`adapters/venue/paper.py`) runs it in process; the venue simulator
serves it over Binance's HTTP API. Modules:

- `market`: symbol specifications, the seeded price path, the top of book, Decimal helpers;
- `prices`: the books the engine trades on (the path, or a pinned mid);
- `records`: the data types and their JSON-able forms;
- `rules`: the filters a new order must pass;
- `account`: netting, fees, position and account views, margin;
- `engine`: orders, fills in slices, the dead-man switch, the record of everything;
- `state`: the engine as a JSON-able document and back.
"""
