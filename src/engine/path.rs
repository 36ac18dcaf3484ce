//! File targets as the engine reads them: lexically normalised, placed against the workspace root, case-folded
//! where the file system folds case.
//!
//! The daemon judges the path the client names; it never touches the file system, so symbolic links are not
//! followed. Relative targets are relative to the workspace. An absolute target is matched at every depth, as if
//! each of its ancestors might be the workspace root (`/repo/.env` is blocked by `.env`): a client names its own
//! workspace root, so a root it chose must not be able to hide a pattern. The root decides only whether a write
//! lands inside the workspace.

use std::fmt;

/// Whether paths that differ only in case name the same file (`--path-case`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PathCase {
    /// Case matters (Linux file systems): the default except on macOS.
    #[cfg_attr(not(target_os = "macos"), default)]
    Sensitive,
    /// Case does not matter (macOS APFS and HFS+ as usually formatted): the default on macOS.
    #[cfg_attr(target_os = "macos", default)]
    Insensitive,
}

/// Where a target lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Inside the workspace: the normalised path relative to its root (`.` for the root itself).
    Inside(String),
    /// Absolute, or escaping the workspace with `..`: normalised, and matched at every depth.
    Outside { path: String, why: Outside },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outside {
    /// Absolute and outside the known workspace root, or relative and climbing out of it with `..`.
    Workspace,
    /// Absolute, and no workspace root is known to tell whether it is inside.
    UnknownRoot,
    /// Absolute and inside the known workspace root (still matched at every depth, see the module comment).
    InsideRoot,
}

impl Location {
    /// The normalised form the engine read (relative to the root when the root contains it).
    pub fn normalized(&self) -> &str {
        match self {
            Location::Inside(path) | Location::Outside { path, .. } => path,
        }
    }

    /// Every spelling a pattern is tried on: the path itself and, for an absolute or escaping one, each of its
    /// suffixes after a `/`.
    pub fn candidates(&self) -> Vec<&str> {
        match self {
            Location::Inside(path) => vec![path.as_str()],
            Location::Outside { path, .. } => {
                let mut all = vec![path.as_str()];
                all.extend(
                    path.match_indices('/')
                        .map(|(at, _)| &path[at + 1..])
                        .filter(|s| !s.is_empty()),
                );
                all
            }
        }
    }
}

/// A workspace root that is not an absolute path without control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRoot(pub String);

impl fmt::Display for InvalidRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The workspace root as the engine uses it: absolute, free of control characters, normalised.
pub fn workspace_root(raw: &str) -> Result<String, InvalidRoot> {
    if raw.chars().any(char::is_control) {
        return Err(InvalidRoot(format!("{raw:?} contains a control character")));
    }
    if !raw.starts_with('/') {
        return Err(InvalidRoot(format!("{raw:?} is not an absolute path")));
    }
    Ok(normalize_path(raw))
}

/// Places `target` against `root` (already checked by [`workspace_root`]).
pub fn locate(target: &str, root: Option<&str>, case: PathCase) -> Location {
    let normalized = normalize_path(target);
    let fold = |text: &str| match case {
        PathCase::Sensitive => text.to_owned(),
        PathCase::Insensitive => text.to_lowercase(),
    };
    if normalized.starts_with('/') {
        let Some(root) = root else {
            return Location::Outside {
                path: normalized,
                why: Outside::UnknownRoot,
            };
        };
        let (folded_path, folded_root) = (fold(&normalized), fold(root));
        let inside = folded_root == "/"
            || folded_path == folded_root
            || folded_path
                .strip_prefix(&folded_root)
                .is_some_and(|rest| rest.starts_with('/'));
        let why = if inside {
            Outside::InsideRoot
        } else {
            Outside::Workspace
        };
        return Location::Outside { path: normalized, why };
    }
    if normalized == ".." || normalized.starts_with("../") {
        let path = match root {
            Some(root) => normalize_path(&format!("{root}/{normalized}")),
            None => normalized,
        };
        return Location::Outside {
            path,
            why: Outside::Workspace,
        };
    }
    Location::Inside(normalized)
}

/// Lexical normalisation, so that `./.env`, `a//b/`, and `src/../.env` cannot slip past a pattern: empty and `.`
/// segments go, `..` removes the segment before it, and an empty relative path is `.`.
pub fn normalize_path(target: &str) -> String {
    let absolute = target.starts_with('/');
    let mut segments: Vec<&str> = Vec::new();
    for segment in target.split('/') {
        match segment {
            "" | "." => {}
            ".." => match segments.last() {
                Some(&last) if last != ".." => {
                    segments.pop();
                }
                // `/..` is `/`; a relative path may climb above its start.
                _ if absolute => {}
                _ => segments.push(".."),
            },
            other => segments.push(other),
        }
    }
    let joined = segments.join("/");
    if absolute {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_owned()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_resolves_dots_slashes_and_parents() {
        for (input, expected) in [
            ("./.env", ".env"),
            ("a//b", "a/b"),
            ("iam/", "iam"),
            ("src/../.env", ".env"),
            ("a/b/../../c", "c"),
            ("../x", "../x"),
            ("../../x/..", "../.."),
            ("/../etc/passwd", "/etc/passwd"),
            ("/", "/"),
            ("", "."),
            ("./", "."),
            ("config/prod.secret", "config/prod.secret"),
        ] {
            assert_eq!(normalize_path(input), expected, "{input}");
        }
    }

    #[test]
    fn targets_are_placed_against_the_root() {
        let s = PathCase::Sensitive;
        assert_eq!(locate("x/../id_rsa", None, s), Location::Inside("id_rsa".into()));
        assert_eq!(
            locate("/repo/.env", None, s),
            Location::Outside {
                path: "/repo/.env".into(),
                why: Outside::UnknownRoot
            }
        );
        let inside = locate("/repo//src/./a.rs", Some("/repo"), s);
        assert_eq!(
            inside,
            Location::Outside {
                path: "/repo/src/a.rs".into(),
                why: Outside::InsideRoot
            }
        );
        assert_eq!(
            inside.candidates(),
            ["/repo/src/a.rs", "repo/src/a.rs", "src/a.rs", "a.rs"]
        );
        for outside in ["/repository/a", "/etc/passwd", "/repo/../etc"] {
            assert!(
                matches!(
                    locate(outside, Some("/repo"), s),
                    Location::Outside {
                        why: Outside::Workspace,
                        ..
                    }
                ),
                "{outside}"
            );
        }
        assert_eq!(
            locate("../x/.env", Some("/repo/app"), s),
            Location::Outside {
                path: "/repo/x/.env".into(),
                why: Outside::Workspace
            }
        );
        assert!(matches!(
            locate("../x", None, s),
            Location::Outside {
                why: Outside::Workspace,
                ..
            }
        ));
        assert!(matches!(
            locate("/REPO/a", Some("/repo"), PathCase::Insensitive),
            Location::Outside {
                why: Outside::InsideRoot,
                ..
            }
        ));
        assert!(matches!(
            locate("/REPO/a", Some("/repo"), s),
            Location::Outside {
                why: Outside::Workspace,
                ..
            }
        ));
        assert!(matches!(
            locate("/anything", Some("/"), s),
            Location::Outside {
                why: Outside::InsideRoot,
                ..
            }
        ));
    }

    #[test]
    fn workspace_roots_must_be_absolute_and_printable() {
        assert_eq!(workspace_root("/repo/./a/").unwrap(), "/repo/a");
        assert!(workspace_root("repo").unwrap_err().0.contains("not an absolute path"));
        assert!(workspace_root("/re\npo").unwrap_err().0.contains("control character"));
    }
}
