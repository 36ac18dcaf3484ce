//! Policy patterns: `*` (and `**`, which means the same) stand for any run of characters, `/` included, except a
//! line break; everything else is literal, case-sensitive, and the whole target must match. This is the reference
//! semantics (`.*` in an anchored regular expression), compiled once into literal pieces so a request never builds
//! a regular expression.
//!
//! Paths are matched with [`Pattern::matches_path`], which differs in two ways that only ever match more: a leading
//! `**/` also matches at the root (`**/id_rsa` matches `id_rsa`, which the reference does not), and on a
//! case-insensitive file system the comparison folds case.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    /// Literal pieces between the stars; `pieces.len() == 1` when the pattern has no star.
    pieces: Vec<String>,
    /// The same pieces lower-cased, for case-insensitive path matching.
    folded: Vec<String>,
}

/// A pattern with a line break could never be reached by a `*`, and no pack needs one: refusing it at load time
/// keeps matching a plain substring search.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pattern {0:?} contains a line break")]
pub struct PatternError(pub String);

impl Pattern {
    pub fn new(source: &str) -> Result<Self, PatternError> {
        if source.contains('\n') {
            return Err(PatternError(source.to_owned()));
        }
        let pieces = source.split('*').map(str::to_owned).collect();
        let folded = source.to_lowercase().split('*').map(str::to_owned).collect();
        Ok(Self {
            source: source.to_owned(),
            pieces,
            folded,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, value: &str) -> bool {
        let (first, rest) = self.pieces.split_first().expect("split yields at least one piece");
        matches_pieces(first, rest, value)
    }

    /// Path matching: as [`Pattern::matches`], and a leading `**/` also matches at the root. With `folded`, `path`
    /// must already be lower-cased and the pattern's case is folded too.
    pub fn matches_path(&self, path: &str, folded: bool) -> bool {
        let pieces = if folded { &self.folded } else { &self.pieces };
        let (first, rest) = pieces.split_first().expect("split yields at least one piece");
        if matches_pieces(first, rest, path) {
            return true;
        }
        // `**/x` is the pieces "", "", "/x"...: without the leading `**/` it is "x"...
        match pieces.as_slice() {
            [empty, star, slashed, rest @ ..] if empty.is_empty() && star.is_empty() => slashed
                .strip_prefix('/')
                .is_some_and(|first| matches_pieces(first, rest, path)),
            _ => false,
        }
    }
}

/// Whether `value` is `first`, then each of `rest` in order with anything but a line break between them.
fn matches_pieces(first: &str, rest: &[String], value: &str) -> bool {
    let Some((last, middle)) = rest.split_last() else {
        return value == first;
    };
    // A star never crosses a line break and no piece contains one, so no value with a line break can match.
    if value.len() < first.len() + last.len()
        || !value.starts_with(first)
        || !value.ends_with(last.as_str())
        || value.contains('\n')
    {
        return false;
    }
    // Leftmost placement of each middle piece leaves the most room for the next one.
    let mut rest = &value[first.len()..value.len() - last.len()];
    for piece in middle {
        match rest.find(piece.as_str()) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, value: &str) -> bool {
        Pattern::new(pattern).unwrap().matches(value)
    }

    #[test]
    fn literal_patterns_match_exactly_and_case_sensitively() {
        assert!(m(".env", ".env"));
        assert!(!m(".env", ".env.local"));
        assert!(!m(".env", "x.env"));
        assert!(!m(".env", ".ENV"));
        assert!(!m(".env", ""));
    }

    #[test]
    fn star_crosses_slashes() {
        assert!(m("iam/**", "iam/a/b/c.tf"));
        assert!(m("iam/**", "iam/"));
        assert!(m("terraform apply*", "terraform apply"));
        assert!(m("terraform apply*", "terraform apply -auto-approve"));
        assert!(m("**/*.pem", "a/b/key.pem"));
    }

    #[test]
    fn leading_double_star_needs_a_slash() {
        assert!(!m("**/secrets.*", "secrets.yaml"));
        assert!(m("**/secrets.*", "config/secrets.yaml"));
        assert!(m("**/secrets.*", "/secrets.yaml"));
    }

    #[test]
    fn middle_pieces_must_appear_in_order() {
        assert!(m("curl *|*sh*", "curl https://x/install.sh | sh"));
        assert!(!m("curl *|*sh*", "curl https://x/install.sh"));
        assert!(m(
            "kubectl apply*--context*prod*",
            "kubectl apply -f d.yaml --context prod"
        ));
        assert!(!m(
            "kubectl apply*--context*prod*",
            "kubectl apply -f prod.yaml --context dev"
        ));
        assert!(m("gh pr merge*--admin*", "gh pr merge 12 --admin"));
    }

    #[test]
    fn prefix_and_suffix_may_not_overlap() {
        assert!(!m("ab*ba", "aba"));
        assert!(m("ab*ba", "abba"));
        assert!(m("a*a", "aa"));
        assert!(!m("a*a", "a"));
    }

    #[test]
    fn star_does_not_cross_a_line_break() {
        assert!(!m("pytest*", "pytest\nrm -rf /"));
        assert!(!m("*", "a\nb"));
        assert!(m("*", ""));
    }

    #[test]
    fn regex_metacharacters_are_literal() {
        assert!(m("a.b*", "a.bc"));
        assert!(!m("a.b*", "axbc"));
        assert!(m("(x)+[y]?", "(x)+[y]?"));
    }

    #[test]
    fn path_matching_lets_a_leading_double_star_match_at_the_root_and_folds_case() {
        let path =
            |pattern: &str, value: &str, folded: bool| Pattern::new(pattern).unwrap().matches_path(value, folded);
        assert!(path("**/id_rsa", "id_rsa", false));
        assert!(path("**/id_rsa", "a/id_rsa", false));
        assert!(path("**/*.pem", "key.pem", false));
        assert!(path("**/.terraform/providers/**", ".terraform/providers/x", false));
        assert!(!path("**/id_rsa", "xid_rsa", false));
        assert!(!path(".env", "a/.env", false));
        assert!(path(".env", ".env", false));
        assert!(!path(".ENV", ".env", false));
        assert!(path(".ENV", ".env", true));
        assert!(path("**/Secrets.*", "secrets.yaml", true));
        assert!(
            !m("**/id_rsa", "id_rsa"),
            "plain matching keeps the reference semantics"
        );
    }

    #[test]
    fn line_breaks_in_patterns_are_refused() {
        assert_eq!(Pattern::new("a\nb"), Err(PatternError("a\nb".into())));
    }
}
