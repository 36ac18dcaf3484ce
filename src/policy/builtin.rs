//! The packs compiled into the binary, so the daemon runs with no files on disk.

use std::collections::BTreeMap;

use super::pack::NamedSource;
use super::{PolicyError, parse_toml};

/// The pack used when neither the operator nor the request names one.
pub const DEFAULT_PACK: &str = "cavra-ai-agent-baseline";

macro_rules! packs {
    ($($id:literal),+ $(,)?) => {
        &[$(($id, include_str!(concat!("packs/", $id, ".toml")))),+]
    };
}

const PACKS: &[(&str, &str)] = packs![
    "ai-agent-baseline",
    "banking-regulated-ai",
    "cavra-agentic-delivery",
    "cavra-ai-agent-baseline",
    "cavra-banking-baseline",
    "cavra-cloud-iam",
    "cavra-eu-ai-act",
    "cavra-github-enterprise",
    "cavra-gitlab-enterprise",
    "cavra-hipaa",
    "cavra-iso27001",
    "cavra-kubernetes-prod",
    "cavra-mcp-enterprise",
    "cavra-nist-ssdf",
    "cavra-owasp-llm-agentic",
    "cavra-pci-dss",
    "cavra-sox-change-control",
    "cavra-terraform-prod",
    "mcp-server-governance",
    "terraform-ai-guardrails",
];

pub fn sources() -> Result<BTreeMap<String, NamedSource>, PolicyError> {
    PACKS
        .iter()
        .map(|(id, text)| {
            let origin = format!("built-in pack {id}");
            let source = parse_toml(&origin, text)?;
            Ok(((*id).to_owned(), NamedSource { origin, source }))
        })
        .collect()
}
