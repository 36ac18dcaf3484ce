//! The file a path reaches: the daemon judges paths as text and never touches the file system, so the hook, which
//! runs as the agent's user and sees what the agent sees, follows symbolic links before it asks.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

/// As Linux's `MAXSYMLINKS`: more links than this on one path is a loop.
const MAX_LINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot resolve {}: more than {MAX_LINKS} symbolic links (a loop?)", path.display())]
    TooManyLinks { path: PathBuf },
}

/// `path` (absolute) as the kernel resolves it: every symbolic link followed, the last component's included, and
/// `..` taken after the link before it. Components that do not exist are kept as written (a file about to be
/// created); nothing below a missing component can exist.
pub fn resolve(path: &Path) -> Result<PathBuf, ResolveError> {
    debug_assert!(path.is_absolute(), "{}", path.display());
    let mut resolved = PathBuf::from("/");
    let mut pending = parts(path);
    let mut links = 0;
    let mut exists = true;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        if !exists {
            resolved = candidate;
            continue;
        }
        match fs::symlink_metadata(&candidate) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(ResolveError::TooManyLinks { path: path.to_owned() });
                }
                let target = fs::read_link(&candidate).map_err(|source| ResolveError::Io {
                    path: candidate.clone(),
                    source,
                })?;
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                let mut expanded = parts(&target);
                expanded.extend(pending);
                pending = expanded;
            }
            Ok(_) => resolved = candidate,
            // A file about to be created, or a file used as a directory: nothing below exists.
            Err(error) if matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
                exists = false;
                resolved = candidate;
            }
            Err(source) => {
                return Err(ResolveError::Io {
                    path: candidate,
                    source,
                });
            }
        }
    }
    Ok(resolved)
}

/// Refuses a write to an existing file with other names (hard links): it changes the file under every name, and
/// only the one asked about is known.
pub fn single_name(path: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_file() && metadata.nlink() > 1 => Err(format!(
            "{} has {} hard links: a write changes the file under its other names too, which cannot be judged from \
             this one",
            path.display(),
            metadata.nlink()
        )),
        _ => Ok(()),
    }
}

/// The names and `..`s of a path; the root, `.` and repeated slashes say nothing.
fn parts(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn links_are_followed_wherever_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("project/.github/workflows")).unwrap();
        fs::create_dir_all(root.join("project/docs")).unwrap();
        fs::create_dir_all(root.join("elsewhere/deep")).unwrap();
        // The last component, relative, dangling: the file it would create.
        symlink("../.github/workflows/ci.yml", root.join("project/docs/notes.md")).unwrap();
        // A directory on the way, absolute.
        symlink(root.join("elsewhere/deep"), root.join("project/out")).unwrap();
        // A chain.
        symlink("notes.md", root.join("project/docs/again.md")).unwrap();

        let project = root.join("project");
        assert_eq!(
            resolve(&project.join("docs/notes.md")).unwrap(),
            project.join(".github/workflows/ci.yml")
        );
        assert_eq!(
            resolve(&project.join("docs/again.md")).unwrap(),
            project.join(".github/workflows/ci.yml")
        );
        assert_eq!(
            resolve(&project.join("out/new/file")).unwrap(),
            root.join("elsewhere/deep/new/file")
        );
        // `..` after a link goes up from where the link leads.
        assert_eq!(resolve(&project.join("out/../x")).unwrap(), root.join("elsewhere/x"));
        // Spellings without links are only tidied.
        assert_eq!(
            resolve(Path::new(&format!("{}//docs/./../README.md", project.display()))).unwrap(),
            project.join("README.md")
        );
    }

    #[test]
    fn loops_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        let error = resolve(&dir.path().join("a/file")).unwrap_err();
        assert!(error.to_string().contains("more than 40 symbolic links"), "{error}");
    }
}
