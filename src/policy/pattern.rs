//! Policy patterns: `*` (and `**`, which means the same) stand for any run of characters, `/` included, except a
//! line break; everything else is literal, case-sensitive, and the whole target must match. This is the reference
//! semantics (`.*` in an anchored regular expression), compiled once into literal pieces so a request never builds
//! a regular expression.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    /// Literal pieces between the stars; `pieces.len() == 1` when the pattern has no star.
    pieces: Vec<String>,
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
        Ok(Self {
            source: source.to_owned(),
            pieces,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, value: &str) -> bool {
        let (first, rest) = self.pieces.split_first().expect("split yields at least one piece");
        let Some((last, middle)) = rest.split_last() else {
            return value == first;
        };
        // A star never crosses a line break and no piece contains one, so no value with a line break can match.
        if value.len() < first.len() + last.len()
            || !value.starts_with(first.as_str())
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
    fn line_breaks_in_patterns_are_refused() {
        assert_eq!(Pattern::new("a\nb"), Err(PatternError("a\nb".into())));
    }
}
