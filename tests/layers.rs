//! The library's layers, read from the source: which module's code names which other module (`crate::x` anywhere,
//! `use super::x` at the top of a file), checked against the order `src/lib.rs` documents. Keeps the import graph
//! free of cycles: between the top-level modules, and between the sibling modules inside each of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first: each may use only those before it (the order `src/lib.rs` lists).
const LAYERS: &[&str] = &[
    "contract",
    "fsutil",
    "metrics",
    "policy",
    "engine",
    "auth",
    "evidence",
    "supervisor",
    "server",
    "cmd",
];

/// A source file's module path below the crate root: `src/cmd/lifecycle/mod.rs` is `["cmd", "lifecycle"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod" || last == "lib") {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

/// The code of a file without its unit tests (a trailing `#[cfg(test)] mod tests`, whose `super::` means the file
/// itself) and without comments.
fn code(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    if let Some(at) = lines
        .windows(2)
        .position(|pair| pair[0].trim() == "#[cfg(test)]" && pair[1].trim_start().starts_with("mod tests"))
    {
        lines.truncate(at);
    }
    lines
        .iter()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first names after each `prefix` in `code` (`crate::a::b` gives `a`; `super::{a, b::c}` gives `a` and `b`).
fn names_after(code: &str, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            names.extend(inner.split(',').filter_map(|item| {
                let name = item.trim().split("::").next().unwrap_or_default().trim();
                (!name.is_empty() && name != "self" && name != "*").then(|| name.to_owned())
            }));
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.push(name);
            }
        }
    }
    names
}

/// Edges between modules, as `(user, used)` module paths.
fn edges(src: &Path) -> BTreeSet<(Vec<String>, Vec<String>)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut edges = BTreeSet::new();
    for file in files {
        let module = module_of(src, &file);
        let code = code(&fs::read_to_string(&file).unwrap());
        for name in names_after(&code, "crate::") {
            edges.insert((module.clone(), vec![name]));
        }
        // `use super::x` at the top of a file names a sibling of this file's module (or an item of the parent).
        if let Some((_, parent)) = module.split_last() {
            for line in code
                .lines()
                .filter(|line| line.starts_with("use super::") || line.starts_with("pub use super::"))
            {
                for name in names_after(line, "super::") {
                    let mut used = parent.to_vec();
                    used.push(name);
                    edges.insert((module.clone(), used));
                }
            }
        }
    }
    edges
}

/// A cycle in `graph`, if it has one, as the path that closes it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|seen| seen == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_top_level_module_is_a_listed_layer() {
    let mut found: BTreeSet<String> = BTreeSet::new();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    for file in files {
        if let Some(top) = module_of(&src(), &file).first()
            && top != "main"
        {
            found.insert(top.clone());
        }
    }
    let listed: BTreeSet<String> = LAYERS.iter().map(|layer| (*layer).to_owned()).collect();
    assert_eq!(
        found, listed,
        "src/ and the layer list (here and in src/lib.rs) must name the same modules"
    );
}

#[test]
fn layers_use_only_the_layers_below_them() {
    let rank = |name: &str| LAYERS.iter().position(|layer| *layer == name);
    let mut upward = Vec::new();
    for (user, used) in edges(&src()) {
        let (Some(user_top), Some(used_top)) = (user.first(), used.first()) else {
            continue;
        };
        if let (Some(from), Some(to)) = (rank(user_top), rank(used_top))
            && to > from
        {
            upward.push(format!("{} uses {}", user.join("::"), used.join("::")));
        }
    }
    assert!(upward.is_empty(), "modules reaching upward:\n{}", upward.join("\n"));
}

#[test]
fn sibling_modules_form_no_cycle() {
    // Within each module, its submodules (not the parent that declares them) must not use each other in a circle.
    let mut graphs: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (user, used) in edges(&src()) {
        let common = user.iter().zip(&used).take_while(|(a, b)| a == b).count();
        // Siblings: both below the same parent, neither the parent itself.
        if common > 0 && common < user.len() && common < used.len() {
            let parent = user[..common].to_vec();
            graphs
                .entry(parent)
                .or_default()
                .entry(user[common].clone())
                .or_default()
                .insert(used[common].clone());
        }
    }
    assert!(
        graphs.contains_key(&vec!["cmd".to_owned()]),
        "the scan sees the modes' imports"
    );
    for (parent, graph) in &graphs {
        let graph: BTreeMap<String, BTreeSet<String>> = graph
            .iter()
            .map(|(node, next)| (node.clone(), next.iter().filter(|n| *n != node).cloned().collect()))
            .collect();
        assert_eq!(
            cycle(&graph),
            None,
            "import cycle among the submodules of {}",
            parent.join("::")
        );
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            graph.entry((*from).to_owned()).or_default().insert((*to).to_owned());
        }
        graph
    };
    assert_eq!(cycle(&graph(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        names_after(
            "use crate::{auth, evidence::x};\nlet a = crate::engine::evaluate();",
            "crate::"
        ),
        ["auth", "evidence", "engine"]
    );
}
