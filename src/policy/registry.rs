//! The MCP trust registry: which MCP servers an organisation has vetted, and for what.

use serde::{Deserialize, Serialize};

use crate::contract::nullable;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrustRegistry {
    #[serde(default, deserialize_with = "nullable")]
    pub mcp_servers: Vec<McpServerRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct McpServerRecord {
    #[serde(default, deserialize_with = "nullable")]
    pub server_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub trust_tier: String,
    #[serde(default, deserialize_with = "nullable")]
    pub approval_state: String,
    #[serde(default, deserialize_with = "nullable")]
    pub capabilities: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub allowed_tools: Vec<String>,
}

impl TrustRegistry {
    /// The first record whose id or name is `server`.
    pub fn find(&self, server: &str) -> Option<&McpServerRecord> {
        self.mcp_servers
            .iter()
            .find(|record| record.server_id == server || record.name == server)
    }
}
