//! Command-line flags. Every mode shares the policy flags; each flag can also come from its environment variable,
//! so a service manager's environment file can set it.

use std::path::PathBuf;

use clap::{Args, Parser};

use crate::policy::{PolicyConfig, PolicySource};

#[derive(Debug, Parser)]
#[command(
    name = "cavra-runtime",
    version,
    about = "Local policy-enforcement runtime for AI coding agents and CI runners",
    long_about = "Local policy-enforcement runtime for AI coding agents and CI runners.\n\n\
                  With no mode flag it evaluates one request (JSON, from --input) against the policy and prints \
                  the decision as indented JSON."
)]
pub struct Cli {
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Request to evaluate once: a JSON file, or `-` for standard input.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub input: PathBuf,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Policy")]
pub struct PolicyArgs {
    /// Compiled policy JSON, as `cavra policy compile` writes it. Default: the packs built into this binary.
    #[arg(long, value_name = "FILE", env = "CAVRA_POLICY", conflicts_with = "policy_dir")]
    pub policy: Option<PathBuf>,

    /// Directory of `<id>/policy.yaml` packs, compiled at start with their `inherits`. Default: the built-in packs.
    #[arg(long, value_name = "DIR", env = "CAVRA_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,

    /// Pack for requests that name none. Default: cavra-ai-agent-baseline, or the id of the --policy file.
    #[arg(long, value_name = "ID", env = "CAVRA_DEFAULT_PACK")]
    pub default_pack: Option<String>,

    /// MCP trust registry JSON; when given, it decides every mcp_tool_call. Default: none (packs decide).
    #[arg(long, value_name = "FILE", env = "CAVRA_REGISTRY")]
    pub registry: Option<PathBuf>,
}

impl PolicyArgs {
    pub fn config(&self) -> PolicyConfig {
        let source = match (&self.policy, &self.policy_dir) {
            (Some(file), _) => PolicySource::CompiledFile(file.clone()),
            (None, Some(dir)) => PolicySource::Directory(dir.clone()),
            (None, None) => PolicySource::BuiltIn,
        };
        PolicyConfig {
            source,
            default_pack: self.default_pack.clone(),
            registry: self.registry.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn policy_and_policy_dir_conflict() {
        let error = Cli::try_parse_from(["cavra-runtime", "--policy", "a.json", "--policy-dir", "d"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
