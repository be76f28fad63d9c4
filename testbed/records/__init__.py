"""Typed records for the data that crosses a package or process boundary (pure data, no I/O).

Each record is a frozen, slotted dataclass with ``to_json()`` and ``from_json()``; the writer
builds the record and calls ``to_json``, the reader calls ``from_json`` and works with the record.
The JSON shapes are contracts (saved results, other programs read them): fields are only ever
added, never renamed.  ``from_json(x.to_json()) == x`` for every record (tests/unit/test_records.py).

Rule: this package imports nothing from the rest of testbed, so every layer -- the sans-IO core
included -- may use it.

    json            JsonObject / JsonValue: the one spelling of untyped JSON at an edge
    timeline        TimelineEntry (a call's ``[t, "who:layer:state"]``), Party, Role, Layer
    censor_event    CensorEvent: one entry of the censor's event log (``censor.events``)
    censor_message  CensorReady / CensorStats / CensorFinal: the censor process's stdout lines
    flow            FlowRecord: one flow, as the censor's result and ``testbed classify`` list it
    app             AppResult: one app (user process in a node) of a run
    probe           ProbeAttempt: one attempt of a repeated probe
    result          SCHEMA_VERSION of the ``--json`` result file
"""
