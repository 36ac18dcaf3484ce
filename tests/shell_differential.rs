//! The shell reader (src/engine/command/shell.rs) against bash itself: generated lines are run by bash with every
//! command name unknown, so bash's `command_not_found_handle` reports the words each simple command received. Where
//! the reader says a line is readable and static, bash must have run exactly those commands with exactly those
//! words; where bash finds a syntax error, the reader must say the line is unreadable.

mod common;

use cavra_runtime::engine::command::shell::parse;
use std::collections::BTreeMap;
use std::process::Command;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const PLAIN: &[&str] = &[
    "a", "b", "x", "-f", "--out=x", "1", "é", "%", ":", ",", ".", "/", "=", "a=b", "@", "+", "^", "]", "}", "~", "#",
];
const INQUOTE: &[&str] = &[
    "a", " ", ";", "|", "&", "(", ")", "<", ">", "#", "*", "?", "[", "{", "}", "~", "\\", "\t", "\n", "é", "!", "$ ",
    "=", "'", "\"",
];

fn word(r: &mut Rng, first: bool) -> String {
    let mut w = String::new();
    if first {
        w.push('x');
    }
    for _ in 0..1 + r.below(3) {
        match r.below(7) {
            0 | 1 => {
                let p = r.pick(PLAIN);
                // `#` and `~` only mean something at the start of a word; keep generated words free of comments.
                if (p == "#" || p == "!" || p == "~") && w.is_empty() {
                    w.push('q');
                }
                w.push_str(p);
            }
            2 => {
                w.push('\'');
                for _ in 0..r.below(4) {
                    let c = r.pick(INQUOTE);
                    w.push_str(if c == "'" { "x" } else { c });
                }
                w.push('\'');
            }
            3 => {
                w.push('"');
                for _ in 0..r.below(4) {
                    match r.pick(INQUOTE) {
                        "\"" => w.push_str("\\\""),
                        "\\" => w.push_str(r.pick(&["\\\\", "\\a", "\\$", "\\`", "\\\n"])),
                        "$ " => w.push_str("$ "),
                        c => w.push_str(c),
                    }
                }
                w.push('"');
            }
            4 => {
                w.push('\\');
                w.push_str(r.pick(INQUOTE));
            }
            5 => {
                w.push_str("$'");
                for _ in 0..r.below(4) {
                    w.push_str(r.pick(&[
                        "a", " ", "\\n", "\\t", "\\'", "\\\\", "\\x41", "\\101", "\\u00e9", "\"", "\\e",
                    ]));
                }
                w.push('\'');
            }
            _ => w.push_str(r.pick(&["a", "b", "-", "0"])),
        }
    }
    if w.is_empty() { "e".into() } else { w }
}

fn line(r: &mut Rng) -> String {
    let mut s = String::new();
    let n = 1 + r.below(3);
    let mut bang = false;
    for i in 0..n {
        if i > 0 {
            // `! a | b && c` skips `c` (the handler succeeds, so `!` fails): no `&&` after a negated pipeline.
            let sep = if bang {
                r.pick(&[";", "\n", " | ", " & "])
            } else {
                r.pick(&[";", " ; ", "\n", " && ", "&&", " | ", "|", " |& ", " & ", ";\n"])
            };
            if !sep.contains('|') {
                bang = false;
            }
            s.push_str(sep);
        }
        let group = r.below(8);
        bang |= group == 2;
        if group == 0 {
            s.push_str("( ");
        } else if group == 1 {
            s.push_str("{ ");
        } else if group == 2 {
            s.push_str("! ");
        }
        s.push_str(&word(r, true));
        for _ in 0..r.below(4) {
            s.push(' ');
            s.push_str(&word(r, false));
        }
        if r.below(6) == 0 {
            s.push_str(r.pick(&[" 2>/dev/null", " >/dev/null", " 2>&1", " </dev/null"]));
        }
        if group == 0 {
            s.push_str(" )");
        } else if group == 1 {
            s.push_str("; }");
        }
    }
    if r.below(10) == 0 {
        s.push_str(" # c;d");
    }
    s
}

fn noise(r: &mut Rng) -> String {
    const ALPHA: &[&str] = &[
        "x", "y", "z", " ", " ", ";", "|", "&", "(", ")", "<", ">", "'", "\"", "\\", "$", "`", "{", "}", "#", "\n",
        "=", "*", "!", "-", "~", "é",
    ];
    let mut s = String::from("x");
    for _ in 0..r.below(14) {
        s.push_str(r.pick(ALPHA));
    }
    s
}

/// Per line: bash's exit status of `eval` and the sorted word lists of the commands it ran.
/// Runs the lines in batches; a batch that crashes bash (bash 5.2.15 has heap bugs some noise trips) is split until
/// the line that does it is found, and that line gets `None`.
fn run_bash(tag: &str, status: &str, lines: &[String]) -> Vec<Option<(i32, Vec<Vec<String>>)>> {
    match run_batch(tag, status, lines) {
        Some(v) => v.into_iter().map(Some).collect(),
        None if lines.len() == 1 => {
            eprintln!("bash gives up on {:?}", lines[0]);
            vec![None]
        }
        None => {
            let (a, b) = lines.split_at(lines.len() / 2);
            let mut v = run_bash(tag, status, a);
            v.extend(run_bash(tag, status, b));
            v
        }
    }
}

fn run_batch(tag: &str, status: &str, lines: &[String]) -> Option<Vec<(i32, Vec<Vec<String>>)>> {
    let dir = std::env::temp_dir().join(format!("cavra-shell-diff-{}-{tag}-{status}", std::process::id()));
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let input = dir.join("in");
    let out = dir.join("out");
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(l.as_bytes());
        buf.push(0);
    }
    std::fs::write(&input, buf).unwrap();
    let script = r#"
command_not_found_handle() { local a r=; for a in "$@"; do r+="$a"$'\037'; done; r=${r//$'\n'/$'\001'}; printf '%s\036' "$r" >&9; return "$STATUS"; }
cd "$EMPTY" || exit 1
exec 9>"$OUT"
PATH=/nonexistent-path
HOME='~'
while IFS= read -r -d '' line; do
  printf '\035' >&9
  eval "$line" </dev/null >/dev/null 2>&1
  st=$?
  wait
  printf '\034%d' "$st" >&9
done < "$IN"
"#;
    let result = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("EMPTY", &empty)
        .env("STATUS", status)
        .env("IN", &input)
        .env("OUT", &out)
        .output()
        .expect("bash runs");
    if !result.status.success() {
        std::fs::remove_dir_all(&dir).ok();
        return None;
    }
    let text = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let v: Vec<_> = text
        .split('\x1d')
        .skip(1)
        .map(|rec| {
            let (cmds, st) = rec.rsplit_once('\x1c').expect("status");
            // printf '%s\037' ends every word with the separator, so an empty word stays a word.
            let mut v: Vec<Vec<String>> = cmds
                .split('\x1e')
                .filter(|c| !c.is_empty())
                .map(|c| {
                    // bash's stdout is line-buffered: the handler writes newlines as \x01 so a record is one write.
                    let mut ws: Vec<String> = c.split('\x1f').map(|w| w.replace('\x01', "\n")).collect();
                    ws.pop(); // after the last separator
                    ws
                })
                .collect();
            v.sort();
            (st.parse().unwrap(), v)
        })
        .collect();
    Some(v)
}

/// What the reader says: `None` if unreadable, else whether every command is static, and the sorted words.
fn ours(l: &str) -> Option<(bool, Vec<Vec<String>>)> {
    let p = parse(l);
    if p.unreadable.is_some() {
        return None;
    }
    // A name with a slash is run as a path, not looked up: bash's handler would not see it.
    let clean = p.commands.iter().all(|c| {
        !c.dynamic
            && !c.glob
            && !c.brace
            && c.assignments.is_empty()
            && c.words.first().is_none_or(|w| !w.contains('/'))
            // A redirection that fails (missing file, closed descriptor) stops the command from running.
            && c.redirects.iter().all(|r| r.target == "/dev/null" || r.op == ">&" && (r.target == "1" || r.target == "2"))
    });
    let mut v: Vec<Vec<String>> = p
        .commands
        .iter()
        .filter(|c| !c.words.is_empty())
        .map(|c| c.words.iter().map(|w| w.to_string()).collect())
        .collect();
    v.sort();
    Some((clean, v))
}

/// Every command's status is the same, so with `&&` and `||` bash runs some commands only when that status is 0 and
/// the others only when it is 1: the union of two runs is every command (a `!` breaks this; such lines are not
/// compared).
fn both_runs(tag: &str, lines: &[String]) -> Vec<Option<(i32, Vec<Vec<String>>)>> {
    let zero = run_bash(tag, "0", lines);
    let one = run_bash(tag, "1", lines);
    zero.into_iter()
        .zip(one)
        .map(|(a, b)| {
            let (st, a) = a?;
            let (_, b) = b?;
            let mut count: BTreeMap<Vec<String>, (usize, usize)> = BTreeMap::new();
            for w in a {
                count.entry(w).or_default().0 += 1;
            }
            for w in b {
                count.entry(w).or_default().1 += 1;
            }
            let mut v = Vec::new();
            for (w, (x, y)) in count {
                for _ in 0..x.max(y) {
                    v.push(w.clone());
                }
            }
            Some((st, v))
        })
        .collect()
}

fn check(tag: &str, lines: Vec<String>, min_compared: usize, compare_bang: bool) {
    let results = both_runs(tag, &lines);
    assert_eq!(results.len(), lines.len());
    let mut compared = 0;
    let mut by_outcome: BTreeMap<&str, usize> = BTreeMap::new();
    for (l, r) in lines.iter().zip(results) {
        let Some((st, bash_words)) = r else {
            // bash gave up on the line (a syntax error inside a substitution ends a non-interactive bash; some lines
            // trip a heap bug in bash 5.2.15): the reader must not have read it either.
            assert!(ours(l).is_none(), "bash could not run {l:?} but the reader read it");
            *by_outcome.entry("bash gave up, unreadable").or_default() += 1;
            continue;
        };
        let syntax_error = st == 2 && bash_words.is_empty();
        match ours(l) {
            None => {
                if std::env::var_os("SHOW_UNREADABLE").is_some() {
                    eprintln!("unreadable (bash status {st}): {l:?} {:?}", parse(l).unreadable);
                }
                *by_outcome.entry("unreadable").or_default() += 1
            }
            Some((clean, words)) => {
                assert!(!syntax_error, "bash finds a syntax error the reader missed: {l:?}");
                if clean && (compare_bang || !l.contains('!')) {
                    compared += 1;
                    assert_eq!(words, bash_words, "words differ for {l:?}");
                    *by_outcome.entry("compared").or_default() += 1;
                } else {
                    *by_outcome.entry("readable, not static").or_default() += 1;
                }
            }
        }
    }
    eprintln!("{by_outcome:?}");
    assert!(compared >= min_compared, "only {compared} lines compared");
}

#[test]
fn generated_lines_read_as_bash_reads_them() {
    if !common::skip::require_programs(&["bash"]) {
        return;
    }
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let lines: Vec<String> = (0..4000).map(|_| line(&mut r)).collect();
    // The generator puts no `&&` or `||` after a negated pipeline, so `!` lines are compared too.
    check("gen", lines, 2500, true);
}

#[test]
fn random_noise_is_never_read_differently() {
    if !common::skip::require_programs(&["bash"]) {
        return;
    }
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let lines: Vec<String> = (0..4000).map(|_| noise(&mut r)).collect();
    check("noise", lines, 500, false);
}
