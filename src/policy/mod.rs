//! Policy packs: where they come from, how they compile, and the set the engine decides against.
//!
//! Three sources, chosen by the operator: the packs built into the binary (the default), one compiled policy JSON
//! file (`--policy`, as the reference `cavra policy compile` writes it), or a directory of `<id>/policy.yaml` packs
//! (`--policy-dir`) compiled here with the same inheritance rules. Every loading error is fatal at start-up and names
//! the file, the field and, for JSON and YAML, the line and column.

mod builtin;
mod pack;
mod pattern;
mod registry;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

pub use builtin::DEFAULT_PACK;
pub use pack::PackSource;
pub use pattern::{Pattern, PatternError};
pub use registry::{McpServerRecord, TrustRegistry};

use pack::NamedSource;
use sha2::{Digest as _, Sha256};

/// One compiled pack: sorted, de-duplicated lists with patterns ready to match.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Policy {
    pub id: String,
    pub block_read: Vec<Pattern>,
    pub block_write: Vec<Pattern>,
    pub require_approval_write: Vec<Pattern>,
    pub command_block: Vec<Pattern>,
    pub command_allow: Vec<Pattern>,
    pub mcp_allowed_servers: Vec<String>,
    pub mcp_blocked_servers: Vec<String>,
    pub mcp_block_unknown_servers: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}: {}{message}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    Syntax {
        origin: String,
        field: Option<String>,
        message: String,
    },
    #[error("{origin}: metadata.id is missing (expected a string naming the pack)")]
    MissingId { origin: String },
    #[error("{origin}: metadata.id is {declared:?} but the pack directory is named {directory:?}; they must match")]
    IdMismatch {
        origin: String,
        declared: String,
        directory: String,
    },
    #[error("{origin}: inherits unknown pack {parent:?} (known packs: {known})")]
    UnknownParent {
        origin: String,
        parent: String,
        known: String,
    },
    #[error("policy pack inheritance cycle: {0}")]
    InheritanceCycle(String),
    #[error("{origin}: field `{field}`: {source}")]
    Pattern {
        origin: String,
        field: String,
        source: PatternError,
    },
    #[error("{}: no policy packs found (expected <id>/policy.yaml in subdirectories)", path.display())]
    EmptyDirectory { path: PathBuf },
    #[error("default policy pack {id:?} is not loaded (loaded packs: {known})")]
    UnknownDefault { id: String, known: String },
    #[error(
        "{} is a YAML policy pack, not compiled policy JSON: --policy takes the JSON `cavra policy compile` writes. \
         Give YAML packs with {use_instead}; they are compiled at start, with their inherits",
        path.display()
    )]
    YamlPack { path: PathBuf, use_instead: String },
}

/// Where the packs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    BuiltIn,
    CompiledFile(PathBuf),
    Directory(PathBuf),
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::BuiltIn => f.write_str("built-in packs"),
            PolicySource::CompiledFile(path) => write!(f, "compiled policy {}", path.display()),
            PolicySource::Directory(path) => write!(f, "policy directory {}", path.display()),
        }
    }
}

/// What the operator asked for; loading it again (on reload) reads the files again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    pub source: PolicySource,
    /// The pack for requests that name none. Defaults to [`DEFAULT_PACK`], or to the id of a compiled policy file.
    pub default_pack: Option<String>,
    pub registry: Option<PathBuf>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            source: PolicySource::BuiltIn,
            default_pack: None,
            registry: None,
        }
    }
}

/// Everything the engine decides against: the packs by id, the default pack and the optional MCP trust registry.
#[derive(Debug, Clone)]
pub struct PolicySet {
    packs: BTreeMap<String, Policy>,
    default_pack: String,
    registry: Option<TrustRegistry>,
    source: PolicySource,
    digest: String,
}

impl PolicySet {
    pub fn load(config: &PolicyConfig) -> Result<Self, PolicyError> {
        let (packs, implied_default) = match &config.source {
            PolicySource::BuiltIn => (pack::compile_all(&builtin::sources()?)?, DEFAULT_PACK.to_owned()),
            PolicySource::Directory(path) => (pack::compile_all(&read_directory(path)?)?, DEFAULT_PACK.to_owned()),
            PolicySource::CompiledFile(path) => {
                let (id, named) = read_compiled(path)?;
                let policy = pack::compile_standalone(&id, &named)?;
                (BTreeMap::from([(id.clone(), policy)]), id)
            }
        };
        let default_pack = config.default_pack.clone().unwrap_or(implied_default);
        if !packs.contains_key(&default_pack) {
            return Err(PolicyError::UnknownDefault {
                id: default_pack,
                known: packs.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        let registry = config.registry.as_deref().map(read_registry).transpose()?;
        let canonical = serde_json::to_vec(&(&default_pack, &packs, &registry)).expect("policies serialise to JSON");
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&canonical)));
        Ok(Self {
            packs,
            default_pack,
            registry,
            source: config.source.clone(),
            digest,
        })
    }

    /// `sha256:<hex>` over everything that decides: packs, default pack and registry. Equal policies, equal digests.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    pub fn pack(&self, id: &str) -> Option<&Policy> {
        self.packs.get(id)
    }

    pub fn packs(&self) -> impl Iterator<Item = &Policy> {
        self.packs.values()
    }

    pub fn default_pack(&self) -> &str {
        &self.default_pack
    }

    pub fn registry(&self) -> Option<&TrustRegistry> {
        self.registry.as_ref()
    }
}

/// A built-in pack by id, for tests.
#[cfg(test)]
pub(crate) fn builtin(id: &str) -> Policy {
    PolicySet::load(&PolicyConfig::default())
        .expect("built-in packs load")
        .pack(id)
        .unwrap_or_else(|| panic!("no built-in pack {id}"))
        .clone()
}

fn read_text(path: &Path) -> Result<String, PolicyError> {
    fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_owned(),
        source,
    })
}

fn syntax_error<E: fmt::Display>(origin: &str, error: serde_path_to_error::Error<E>) -> PolicyError {
    let field = error.path().to_string();
    PolicyError::Syntax {
        origin: origin.to_owned(),
        field: (field != ".").then_some(field),
        message: error.inner().to_string(),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(origin: &str, text: &str) -> Result<T, PolicyError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| syntax_error(origin, error))?;
    deserializer.end().map_err(|error| PolicyError::Syntax {
        origin: origin.to_owned(),
        field: None,
        message: error.to_string(),
    })?;
    Ok(value)
}

fn parse_yaml(origin: &str, text: &str) -> Result<PackSource, PolicyError> {
    serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(text))
        .map_err(|error| syntax_error(origin, error))
}

fn parse_toml(origin: &str, text: &str) -> Result<PackSource, PolicyError> {
    toml::from_str(text).map_err(|error| PolicyError::Syntax {
        origin: origin.to_owned(),
        field: None,
        message: error.to_string(),
    })
}

fn read_compiled(path: &Path) -> Result<(String, NamedSource), PolicyError> {
    let origin = path.display().to_string();
    let text = read_text(path)?;
    let source: PackSource = parse_json(&origin, &text).map_err(|error| yaml_pack(path, &text).unwrap_or(error))?;
    let id = match &source.metadata.id {
        Some(id) if !id.trim().is_empty() => id.clone(),
        _ => return Err(PolicyError::MissingId { origin }),
    };
    Ok((id, NamedSource { origin, source }))
}

/// The error for a YAML pack given where compiled JSON is expected: text that is no JSON at all but a YAML mapping.
fn yaml_pack(path: &Path, text: &str) -> Option<PolicyError> {
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
        return None;
    }
    let Ok(serde_norway::Value::Mapping(_)) = serde_norway::from_str(text) else {
        return None;
    };
    let use_instead = match (path.file_name(), path.parent().and_then(Path::parent)) {
        (Some(name), Some(dir)) if name == "policy.yaml" => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            format!("--policy-dir {} (packs are <dir>/<id>/policy.yaml)", dir.display())
        }
        _ => "--policy-dir DIR, with this pack at DIR/<its metadata.id>/policy.yaml".to_owned(),
    };
    Some(PolicyError::YamlPack {
        path: path.to_owned(),
        use_instead,
    })
}

fn read_directory(path: &Path) -> Result<BTreeMap<String, NamedSource>, PolicyError> {
    let read_error = |source| PolicyError::Read {
        path: path.to_owned(),
        source,
    };
    let mut packs = BTreeMap::new();
    for entry in fs::read_dir(path).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let file = entry.path().join("policy.yaml");
        // Subdirectories without a policy.yaml (shared snippets, community examples) are not packs.
        if !file.is_file() {
            continue;
        }
        let directory = entry.file_name().to_string_lossy().into_owned();
        let origin = file.display().to_string();
        let source = parse_yaml(&origin, &read_text(&file)?)?;
        match &source.metadata.id {
            None => return Err(PolicyError::MissingId { origin }),
            Some(declared) if *declared != directory => {
                return Err(PolicyError::IdMismatch {
                    origin,
                    declared: declared.clone(),
                    directory,
                });
            }
            Some(_) => {}
        }
        packs.insert(directory, NamedSource { origin, source });
    }
    if packs.is_empty() {
        return Err(PolicyError::EmptyDirectory { path: path.to_owned() });
    }
    Ok(packs)
}

fn read_registry(path: &Path) -> Result<TrustRegistry, PolicyError> {
    parse_json(&path.display().to_string(), &read_text(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, relative: &str, text: &str) -> PathBuf {
        let path = dir.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    fn load_error(config: PolicyConfig) -> String {
        PolicySet::load(&config).unwrap_err().to_string()
    }

    #[test]
    fn built_in_set_has_twenty_packs_and_the_baseline_default() {
        let set = PolicySet::load(&PolicyConfig::default()).unwrap();
        assert_eq!(set.packs().count(), 20);
        assert!(
            set.digest().starts_with("sha256:") && set.digest().len() == 71,
            "{}",
            set.digest()
        );
        assert_eq!(
            set.digest(),
            PolicySet::load(&PolicyConfig::default()).unwrap().digest()
        );
        assert_eq!(set.default_pack(), "cavra-ai-agent-baseline");
        assert!(set.registry().is_none());
    }

    #[test]
    fn compiled_file_defaults_to_its_own_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "p.json",
            r#"{"metadata":{"id":"mine"},"commands":{"allow":["b*","a*"]}}"#,
        );
        let set = PolicySet::load(&PolicyConfig {
            source: PolicySource::CompiledFile(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(set.default_pack(), "mine");
        let allow: Vec<_> = set
            .pack("mine")
            .unwrap()
            .command_allow
            .iter()
            .map(|p| p.as_str())
            .collect();
        assert_eq!(allow, ["a*", "b*"]);
    }

    #[test]
    fn non_string_pattern_names_file_field_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "p.json",
            "{\n  \"metadata\": {\"id\": \"x\"},\n  \"filesystem\": {\"block_read\": [\".env\", 7]}\n}\n",
        );
        let message = load_error(PolicyConfig {
            source: PolicySource::CompiledFile(path.clone()),
            ..Default::default()
        });
        assert_eq!(
            message,
            format!(
                "{}: field `filesystem.block_read[1]`: invalid type: integer `7`, expected a string at line 3 column 41",
                path.display()
            )
        );
    }

    #[test]
    fn invalid_json_and_trailing_data_are_reported_with_position() {
        let dir = tempfile::tempdir().unwrap();
        let broken = write(dir.path(), "broken.json", "{\"metadata\": {\"id\": \"x\"}");
        let message = load_error(PolicyConfig {
            source: PolicySource::CompiledFile(broken),
            ..Default::default()
        });
        assert!(
            message.contains("broken.json: ") && message.contains("EOF while parsing"),
            "{message}"
        );
        let trailing = write(dir.path(), "trailing.json", "{\"metadata\": {\"id\": \"x\"}} {}");
        let message = load_error(PolicyConfig {
            source: PolicySource::CompiledFile(trailing),
            ..Default::default()
        });
        assert!(message.contains("trailing characters at line 1 column 27"), "{message}");
    }

    #[test]
    fn compiled_file_without_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "p.json", r#"{"metadata":{"title":"t"}}"#);
        let message = load_error(PolicyConfig {
            source: PolicySource::CompiledFile(path.clone()),
            ..Default::default()
        });
        assert_eq!(
            message,
            format!(
                "{}: metadata.id is missing (expected a string naming the pack)",
                path.display()
            )
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let message = load_error(PolicyConfig {
            source: PolicySource::CompiledFile("/nonexistent/policy.json".into()),
            ..Default::default()
        });
        assert!(
            message.starts_with("cannot read /nonexistent/policy.json: "),
            "{message}"
        );
    }

    #[test]
    fn directory_packs_inherit_and_report_yaml_positions() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "base/policy.yaml",
            "metadata:\n  id: base\nfilesystem:\n  block_read: ['.env']\n",
        );
        write(
            dir.path(),
            "child/policy.yaml",
            "metadata:\n  id: child\n  inherits: base\ncommands:\n  allow: ['make*']\ngit:\n  anything: true\n",
        );
        write(dir.path(), "community/notes.yaml", "not: a pack\n");
        let set = PolicySet::load(&PolicyConfig {
            source: PolicySource::Directory(dir.path().into()),
            default_pack: Some("child".into()),
            registry: None,
        })
        .unwrap();
        let child = set.pack("child").unwrap();
        assert_eq!(child.block_read[0].as_str(), ".env");
        assert_eq!(child.command_allow[0].as_str(), "make*");

        write(
            dir.path(),
            "bad/policy.yaml",
            "metadata:\n  id: bad\ncommands:\n  block:\n    - [nested]\n",
        );
        let message = load_error(PolicyConfig {
            source: PolicySource::Directory(dir.path().into()),
            default_pack: Some("child".into()),
            registry: None,
        });
        assert!(
            message.contains("bad/policy.yaml: field `commands.block[0]`: "),
            "{message}"
        );
        assert!(message.contains("line 5 column 7"), "{message}");
    }

    #[test]
    fn directory_pack_id_must_match_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "one/policy.yaml", "metadata:\n  id: two\n");
        let message = load_error(PolicyConfig {
            source: PolicySource::Directory(dir.path().into()),
            ..Default::default()
        });
        assert!(message.ends_with("metadata.id is \"two\" but the pack directory is named \"one\"; they must match"));
    }

    #[test]
    fn directory_without_the_default_pack_lists_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "acme/policy.yaml", "metadata:\n  id: acme\n");
        let message = load_error(PolicyConfig {
            source: PolicySource::Directory(dir.path().into()),
            ..Default::default()
        });
        assert_eq!(
            message,
            "default policy pack \"cavra-ai-agent-baseline\" is not loaded (loaded packs: acme)"
        );
    }

    #[test]
    fn empty_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let message = load_error(PolicyConfig {
            source: PolicySource::Directory(dir.path().into()),
            ..Default::default()
        });
        assert!(message.ends_with("no policy packs found (expected <id>/policy.yaml in subdirectories)"));
    }

    #[test]
    fn registry_errors_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "r.json", r#"{"mcp_servers":[{"server_id":1}]}"#);
        let message = load_error(PolicyConfig {
            registry: Some(path.clone()),
            ..Default::default()
        });
        assert!(
            message.starts_with(&format!(
                "{}: field `mcp_servers[0].server_id`: invalid type",
                path.display()
            )),
            "{message}"
        );
    }
}
