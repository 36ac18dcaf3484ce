//! cavra-runtime: a local policy-enforcement runtime. AI coding agents and CI runners ask it whether an action may
//! happen; it answers allow, block or require_approval from a policy pack.

pub mod auth;
pub mod cli;
pub mod client;
pub mod contract;
pub mod daemon;
pub mod daemon_client;
pub mod engine;
pub mod evidence;
pub mod lifecycle;
pub mod oneshot;
pub mod paths;
pub mod policy;
pub mod server;
pub mod service;
pub mod verify_evidence;
