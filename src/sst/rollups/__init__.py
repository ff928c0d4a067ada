"""Daily rollups that keep `sst report` fast with history.

Each report reads rollup rows for what they cover and the raw rows for the rest, so it
answers exactly what sst.reports' raw queries answer:

- events (rollup_events), deliveries (rollup_deliveries), requests and reconciliation
  (rollup_requests, rollup_reasons) are counted per UTC day; a window's whole days come
  from the rollup, its partial first/last day from the raw rows;
- attribution reads one row per conversion (rollup_conversions, exact times, so no partial
  days), worked out once and worked out again when the identity data it depends on changes;
- rows newer than a rollup's watermark (rollup_state.last_id), and rows below it that are
  not final yet (rollup_open_*), are always read raw.

Modules: state (watermarks, lock, settled horizons), days (windows split into whole and
partial days), counters (add to a counter row), events, deliveries, requests, conversions
(each: the pass that rolls up and the report that reads), erasure (what `sst forget` and
retention take out), passes (the incremental pass and the rebuild), read (reports.run's
rollup-backed answers).
"""
