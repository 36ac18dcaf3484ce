//! Metrics the hot path updates with atomics only, each thread in its own copy (`shards`): counters, fixed-bucket
//! histograms and a table of labelled counter series that fills itself lock-free. Reading them (at a scrape) takes a
//! snapshot; encoding them in the Prometheus text format is done with `prometheus-client` ([`encode`]).
//!
//! Nothing here knows what is counted: the server and the evidence log own their metrics and describe them when
//! encoding (see `server::metrics`).

pub mod encode;
mod histogram;
mod series;
mod shards;

pub use histogram::{Histogram, HistogramSnapshot};
pub use series::SeriesTable;
pub use shards::Counter;
