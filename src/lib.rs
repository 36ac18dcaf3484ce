//! cavra-runtime: a local policy-enforcement runtime. AI coding agents and CI runners ask it whether an action may
//! happen; it answers allow, block or require_approval from a policy pack, and records every decision in a
//! tamper-evident evidence log before answering.
//!
//! A request's path through the daemon, and the module that owns each step:
//!
//! ```text
//! accept ─────────▶ connection ─────────▶ handler ─────────▶ engine ─────────▶ evidence ─────────▶ answer
//! server/mod.rs      server/connection.rs  server/handler.rs   engine/           evidence/          (connection)
//! peer credentials,  protocol modes,       decode, health,     one module per    hash-chained record,
//! connection bounds  framing, overload     runner auth         action kind       durable before the answer
//! ```
//!
//! The layers, lowest first. Each uses only those above it in this list, never one below:
//!
//! - [`contract`]: the wire types (requests, decisions, health) and their JSON, defined in the client crate
//!   (`cavra_runtime_client`, in `client/`), and the daemon's refusals.
//! - [`fsutil`]: directories and files another local user cannot redirect: checked owners and modes, no links.
//! - [`metrics`]: counters and histograms updated with atomics, and their Prometheus text encoding.
//! - [`policy`]: policy packs, their compilation, patterns, the MCP trust registry.
//! - [`engine`]: one request in, one decision out; no I/O.
//! - [`auth`]: who may ask (peer credentials, runner HMAC and OIDC) and the secrets they use.
//! - [`evidence`]: the evidence log: records, the single writer, opening and verifying.
//! - [`supervisor`]: glue to whatever supervises the process: readiness notifications and logs.
//! - [`server`]: the listener, the accept loop and its bounds, connections and the request handler.
//! - [`cmd`]: the command line: flags and one module per mode. Talking to a running daemon (`--daemon`,
//!   `--lifecycle`) is the client crate's `Client`.

pub mod auth;
pub mod cmd;
pub mod contract;
pub mod engine;
pub mod evidence;
pub mod fsutil;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod supervisor;
