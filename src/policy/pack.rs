//! Pack sources and how they compile into a [`Policy`].
//!
//! One serde shape serves the built-in TOML packs, operators' YAML packs (`<id>/policy.yaml`) and compiled policy
//! JSON: a `metadata` table with `id` and optional `inherits`, plus `filesystem`, `commands` and `mcp` sections.
//! Other sections (git, compliance, approvals, ...) are documentation for humans and are ignored.
//!
//! Compile rules (the reference authority's): parents first, in the order `inherits` lists them; lists are merged
//! without duplicates and sorted by code point; `block_unknown_servers` takes the last value set along that order
//! and defaults to true, so a pack that names no MCP servers trusts none.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::pattern::Pattern;
use super::{Policy, PolicyError};
use crate::contract::nullable;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PackSource {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Metadata,
    #[serde(default, deserialize_with = "nullable")]
    pub filesystem: FilesystemSection,
    #[serde(default, deserialize_with = "nullable")]
    pub commands: CommandsSection,
    #[serde(default, deserialize_with = "nullable")]
    pub mcp: McpSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    #[serde(default, deserialize_with = "nullable")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub inherits: Inherits,
}

/// `inherits` may name one parent or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a pack id or a list of pack ids")]
pub enum Inherits {
    One(String),
    Many(Vec<String>),
}

impl Default for Inherits {
    fn default() -> Self {
        Inherits::Many(Vec::new())
    }
}

impl Inherits {
    fn ids(&self) -> &[String] {
        match self {
            Inherits::One(id) => std::slice::from_ref(id),
            Inherits::Many(ids) => ids,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FilesystemSection {
    #[serde(default, deserialize_with = "nullable")]
    pub block_read: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub block_write: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub require_approval_write: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommandsSection {
    #[serde(default, deserialize_with = "nullable")]
    pub block: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct McpSection {
    #[serde(default, deserialize_with = "nullable")]
    pub allowed_servers: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub blocked_servers: Vec<String>,
    #[serde(default)]
    pub block_unknown_servers: Option<bool>,
}

/// A pack as read, with where it came from (for error messages).
#[derive(Debug, Clone)]
pub struct NamedSource {
    pub origin: String,
    pub source: PackSource,
}

/// Lists of one pack after merging its ancestors, before sorting and pattern compilation.
#[derive(Debug, Default)]
struct Merged {
    block_read: BTreeSet<String>,
    block_write: BTreeSet<String>,
    require_approval_write: BTreeSet<String>,
    command_block: BTreeSet<String>,
    command_allow: BTreeSet<String>,
    mcp_allowed: BTreeSet<String>,
    mcp_blocked: BTreeSet<String>,
    mcp_block_unknown: Option<bool>,
}

impl Merged {
    fn absorb(&mut self, other: &Merged) {
        self.block_read.extend(other.block_read.iter().cloned());
        self.block_write.extend(other.block_write.iter().cloned());
        self.require_approval_write
            .extend(other.require_approval_write.iter().cloned());
        self.command_block.extend(other.command_block.iter().cloned());
        self.command_allow.extend(other.command_allow.iter().cloned());
        self.mcp_allowed.extend(other.mcp_allowed.iter().cloned());
        self.mcp_blocked.extend(other.mcp_blocked.iter().cloned());
        if other.mcp_block_unknown.is_some() {
            self.mcp_block_unknown = other.mcp_block_unknown;
        }
    }

    fn own(source: &PackSource) -> Merged {
        let set = |items: &[String]| items.iter().cloned().collect::<BTreeSet<_>>();
        Merged {
            block_read: set(&source.filesystem.block_read),
            block_write: set(&source.filesystem.block_write),
            require_approval_write: set(&source.filesystem.require_approval_write),
            command_block: set(&source.commands.block),
            command_allow: set(&source.commands.allow),
            mcp_allowed: set(&source.mcp.allowed_servers),
            mcp_blocked: set(&source.mcp.blocked_servers),
            mcp_block_unknown: source.mcp.block_unknown_servers,
        }
    }
}

/// Compiles one stand-alone pack (a compiled policy file): `inherits`, if present, was already applied by the
/// tool that compiled it.
pub fn compile_standalone(id: &str, named: &NamedSource) -> Result<Policy, PolicyError> {
    build(id, &named.origin, Merged::own(&named.source))
}

/// Compiles every pack of a set, resolving inheritance within the set.
pub fn compile_all(sources: &BTreeMap<String, NamedSource>) -> Result<BTreeMap<String, Policy>, PolicyError> {
    let mut done: BTreeMap<String, Merged> = BTreeMap::new();
    for id in sources.keys() {
        let mut chain = Vec::new();
        resolve(id, sources, &mut done, &mut chain)?;
    }
    sources
        .iter()
        .map(|(id, named)| {
            let merged = done.remove(id).expect("every pack was resolved");
            Ok((id.clone(), build(id, &named.origin, merged)?))
        })
        .collect()
}

fn resolve(
    id: &str,
    sources: &BTreeMap<String, NamedSource>,
    done: &mut BTreeMap<String, Merged>,
    chain: &mut Vec<String>,
) -> Result<(), PolicyError> {
    if done.contains_key(id) {
        return Ok(());
    }
    if let Some(start) = chain.iter().position(|seen| seen == id) {
        let mut cycle = chain[start..].to_vec();
        cycle.push(id.to_owned());
        return Err(PolicyError::InheritanceCycle(cycle.join(" -> ")));
    }
    let named = &sources[id];
    chain.push(id.to_owned());
    let mut merged = Merged::default();
    for parent in named.source.metadata.inherits.ids() {
        if !sources.contains_key(parent) {
            return Err(PolicyError::UnknownParent {
                origin: named.origin.clone(),
                parent: parent.clone(),
                known: sources.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        resolve(parent, sources, done, chain)?;
        merged.absorb(&done[parent]);
    }
    merged.absorb(&Merged::own(&named.source));
    chain.pop();
    done.insert(id.to_owned(), merged);
    Ok(())
}

fn build(id: &str, origin: &str, merged: Merged) -> Result<Policy, PolicyError> {
    let patterns = |field: &str, items: BTreeSet<String>| -> Result<Vec<Pattern>, PolicyError> {
        items
            .iter()
            .map(|item| {
                Pattern::new(item).map_err(|source| PolicyError::Pattern {
                    origin: origin.to_owned(),
                    field: field.to_owned(),
                    source,
                })
            })
            .collect()
    };
    Ok(Policy {
        id: id.to_owned(),
        block_read: patterns("filesystem.block_read", merged.block_read)?,
        block_write: patterns("filesystem.block_write", merged.block_write)?,
        require_approval_write: patterns("filesystem.require_approval_write", merged.require_approval_write)?,
        command_block: patterns("commands.block", merged.command_block)?,
        command_allow: patterns("commands.allow", merged.command_allow)?,
        mcp_allowed_servers: merged.mcp_allowed.into_iter().collect(),
        mcp_blocked_servers: merged.mcp_blocked.into_iter().collect(),
        mcp_block_unknown_servers: merged.mcp_block_unknown.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(toml_text: &str) -> NamedSource {
        NamedSource {
            origin: "test".into(),
            source: toml::from_str(toml_text).unwrap(),
        }
    }

    fn set(entries: &[(&str, &str)]) -> BTreeMap<String, NamedSource> {
        entries
            .iter()
            .map(|(id, text)| ((*id).to_owned(), source(text)))
            .collect()
    }

    fn strings(patterns: &[Pattern]) -> Vec<&str> {
        patterns.iter().map(Pattern::as_str).collect()
    }

    #[test]
    fn parents_merge_first_without_duplicates_and_lists_sort() {
        let packs = compile_all(&set(&[
            ("a", "[filesystem]\nblock_read = ['z', 'b']\n[mcp]\nblock_unknown_servers = false"),
            ("b", "[filesystem]\nblock_read = ['b', 'y']\n[commands]\nallow = ['pytest*']"),
            (
                "c",
                "[metadata]\ninherits = ['a', 'b']\n[filesystem]\nblock_read = ['a', 'z']\n[mcp]\nallowed_servers = ['s2', 's1']",
            ),
        ]))
        .unwrap();
        let c = &packs["c"];
        assert_eq!(strings(&c.block_read), ["a", "b", "y", "z"]);
        assert_eq!(strings(&c.command_allow), ["pytest*"]);
        assert_eq!(c.mcp_allowed_servers, ["s1", "s2"]);
        assert!(!c.mcp_block_unknown_servers, "inherited from a");
        assert!(packs["b"].mcp_block_unknown_servers, "defaults to true");
    }

    #[test]
    fn child_overrides_block_unknown_servers() {
        let packs = compile_all(&set(&[
            ("a", "[mcp]\nblock_unknown_servers = false"),
            ("c", "[metadata]\ninherits = 'a'\n[mcp]\nblock_unknown_servers = true"),
        ]))
        .unwrap();
        assert!(packs["c"].mcp_block_unknown_servers);
    }

    #[test]
    fn unknown_parent_names_the_pack_and_the_parent() {
        let error = compile_all(&set(&[("a", "[metadata]\ninherits = ['ghost']")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "test: inherits unknown pack \"ghost\" (known packs: a)"
        );
    }

    #[test]
    fn inheritance_cycles_are_reported_with_their_path() {
        let error = compile_all(&set(&[
            ("a", "[metadata]\ninherits = ['b']"),
            ("b", "[metadata]\ninherits = ['c']"),
            ("c", "[metadata]\ninherits = ['a']"),
        ]))
        .unwrap_err();
        assert_eq!(error.to_string(), "policy pack inheritance cycle: a -> b -> c -> a");
    }

    #[test]
    fn a_pattern_with_a_line_break_names_its_field() {
        let error = compile_all(&set(&[("a", "[commands]\nblock = [\"x\\ny\"]")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "test: field `commands.block`: pattern \"x\\ny\" contains a line break"
        );
    }
}
