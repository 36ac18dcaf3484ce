//! Wrappers: commands that run another command (`sudo`, `env VAR=1 cmd`, `nohup`, `xargs`, `bash -c '...'`, ...).
//!
//! [`step`] says what a command's first word makes of the words after it. Block rules see through every wrapper;
//! allow rules see only through [`Via::Transparent`] ones, which change nothing about how the command runs. A
//! wrapper is recognised by its exact name; named by a path (`/usr/bin/nohup`) or given an option this table does
//! not know, it is still unwrapped for block rules but no longer transparent.

use std::borrow::Cow;

/// How a wrapper runs the command it wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Same user, same environment, same arguments: `nohup`, `time`, `command`, `builtin`, `exec`, `nice`, `ionice`,
    /// `timeout`, `stdbuf`, `setsid`, `taskset`, `env` with no options or assignments, `busybox APPLET`, `watch`,
    /// `bash -c STRING`. An allow rule may be matched by the wrapped command.
    Transparent,
    /// Another user, root, host or environment: `sudo`, `doas`, `su`, `runuser`, `chroot`, `ssh`, `env` with
    /// assignments or options; or a wrapper named by a path, or given an option this table does not know. Only block
    /// rules see through.
    Changed,
    /// Arguments are added or the text is re-read: `xargs`, `find -exec`, `eval`, `env -S`. Only block rules see
    /// through.
    ArgsAdded,
}

/// What a command's first word makes of the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not a wrapper, or a wrapper that runs no command here (`command -v x`, `sudo -l`, `bash script.sh`).
    None,
    /// The wrapped command starts at this word.
    Command { at: usize, via: Via },
    /// The wrapped "command" is shell text to read again (`bash -c`, `su -c`, `ssh host cmd`, `watch cmd`, `eval`).
    Shell { text: String, via: Via },
    /// Several wrapped commands, each a range of words (`find -exec ... ;`).
    Ranges { ranges: Vec<(usize, usize)>, via: Via },
}

struct Opts {
    /// Short options that take an argument (glued `-uroot` or as the next word).
    arg: &'static str,
    /// Short options whose argument is optional and may only be glued (`xargs -i{}`).
    glued: &'static str,
    /// Short options that take none.
    flags: &'static str,
    /// Short options that mean no command runs.
    stop: &'static str,
    long_arg: &'static [&'static str],
    long_flags: &'static [&'static str],
    long_stop: &'static [&'static str],
}

const NO_OPTS: Opts = Opts {
    arg: "",
    glued: "",
    flags: "",
    stop: "",
    long_arg: &[],
    long_flags: &[],
    long_stop: &[],
};

enum Parsed {
    /// Index of the first operand, and whether an unknown option was seen.
    At(usize, bool),
    /// A stop option: no command runs.
    Stop,
}

/// getopt-style option skipping from `words[k]`. A lone `-` is an operand, `--` ends the options.
fn skip_opts(words: &[Cow<'_, str>], mut k: usize, o: &Opts) -> Parsed {
    let mut unknown = false;
    while k < words.len() {
        let w: &str = &words[k];
        if w == "--" {
            return Parsed::At(k + 1, unknown);
        }
        if let Some(long) = w.strip_prefix("--") {
            let (name, has_value) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            if o.long_stop.contains(&name) {
                return Parsed::Stop;
            }
            if o.long_arg.contains(&name) {
                k += if has_value { 1 } else { 2 };
            } else {
                unknown |= !o.long_flags.contains(&name);
                k += 1;
            }
            continue;
        }
        let Some(cluster) = w.strip_prefix('-') else {
            return Parsed::At(k, unknown);
        };
        if cluster.is_empty() {
            return Parsed::At(k, unknown);
        }
        let mut next = k + 1;
        for (pos, c) in cluster.char_indices() {
            if o.stop.contains(c) {
                return Parsed::Stop;
            }
            if o.arg.contains(c) {
                if pos + c.len_utf8() == cluster.len() {
                    next = k + 2;
                }
                break;
            }
            if o.glued.contains(c) {
                break;
            }
            unknown |= !o.flags.contains(c);
        }
        k = next;
    }
    Parsed::At(k, unknown)
}

fn is_assignment_word(w: &str) -> bool {
    match w.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name
                    .bytes()
                    .enumerate()
                    .all(|(i, c)| c == b'_' || c.is_ascii_alphabetic() || i > 0 && c.is_ascii_digit())
        }
        None => false,
    }
}

const SHELLS: &[&str] = &[
    "sh", "bash", "rbash", "dash", "zsh", "ksh", "ksh93", "mksh", "ash", "yash", "posh", "fish",
];

/// What `words[0]` does with the words after it.
pub fn step(words: &[Cow<'_, str>]) -> Step {
    let Some(first) = words.first() else { return Step::None };
    let (name, by_path) = match first.rfind('/') {
        Some(at) => (&first[at + 1..], true),
        None => (&first[..], false),
    };
    // A wrapper named by a path may be anything: unwrapped for block rules only.
    let demote = |v: Via| if by_path { Via::Changed.max_with(v) } else { v };
    let cmd = |r: Parsed, via: Via| -> Step {
        match r {
            Parsed::At(at, _) if at >= words.len() => Step::None,
            Parsed::At(at, unknown) => Step::Command {
                at,
                via: demote(if unknown { Via::Changed.max_with(via) } else { via }),
            },
            Parsed::Stop => Step::None,
        }
    };
    match name {
        "nohup" | "builtin" => cmd(skip_opts(words, 1, &NO_OPTS), Via::Transparent),
        "time" => cmd(
            skip_opts(
                words,
                1,
                &Opts {
                    arg: "fo",
                    flags: "pavq",
                    long_arg: &["format", "output"],
                    long_flags: &["portability", "append", "verbose", "quiet"],
                    ..NO_OPTS
                },
            ),
            Via::Transparent,
        ),
        "command" => cmd(
            skip_opts(
                words,
                1,
                &Opts {
                    flags: "p",
                    stop: "vV",
                    ..NO_OPTS
                },
            ),
            Via::Transparent,
        ),
        "exec" => cmd(
            skip_opts(
                words,
                1,
                &Opts {
                    arg: "a",
                    flags: "cl",
                    ..NO_OPTS
                },
            ),
            Via::Transparent,
        ),
        "nice" => {
            // `nice -10 cmd` and `nice -n 10 cmd`.
            let mut k = 1;
            while let Some(w) = words.get(k) {
                let w: &str = w;
                let numeric = w.strip_prefix('-').is_some_and(|n| {
                    let n = n.strip_prefix(['-', '+']).unwrap_or(n);
                    !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit())
                });
                if !numeric {
                    break;
                }
                k += 1;
            }
            cmd(
                skip_opts(
                    words,
                    k,
                    &Opts {
                        arg: "n",
                        long_arg: &["adjustment"],
                        ..NO_OPTS
                    },
                ),
                Via::Transparent,
            )
        }
        "ionice" => cmd(
            skip_opts(
                words,
                1,
                &Opts {
                    arg: "cn",
                    flags: "t",
                    stop: "pPu",
                    ..NO_OPTS
                },
            ),
            Via::Transparent,
        ),
        "timeout" => match skip_opts(
            words,
            1,
            &Opts {
                arg: "ks",
                flags: "v",
                long_arg: &["kill-after", "signal"],
                long_flags: &["preserve-status", "foreground", "verbose"],
                ..NO_OPTS
            },
        ) {
            // The first operand is the duration.
            Parsed::At(at, unknown) => cmd(Parsed::At(at + 1, unknown), Via::Transparent),
            Parsed::Stop => Step::None,
        },
        "stdbuf" => cmd(
            skip_opts(
                words,
                1,
                &Opts {
                    arg: "ioe",
                    long_arg: &["input", "output", "error"],
                    ..NO_OPTS
                },
            ),
            Via::Transparent,
        ),
        "setsid" => cmd(
            skip_opts(
                words,
                1,
                &Opts {
                    flags: "cfw",
                    long_flags: &["ctty", "fork", "wait"],
                    ..NO_OPTS
                },
            ),
            Via::Transparent,
        ),
        "taskset" => match skip_opts(
            words,
            1,
            &Opts {
                flags: "ac",
                stop: "p",
                long_flags: &["all-tasks", "cpu-list"],
                long_stop: &["pid"],
                ..NO_OPTS
            },
        ) {
            // The first operand is the mask or CPU list.
            Parsed::At(at, unknown) => cmd(Parsed::At(at + 1, unknown), Via::Transparent),
            Parsed::Stop => Step::None,
        },
        "busybox" => match words.get(1) {
            Some(w) if !w.starts_with('-') => Step::Command {
                at: 1,
                via: demote(Via::Transparent),
            },
            _ => Step::None,
        },
        "env" => {
            let o = Opts {
                arg: "uCSPa",
                flags: "i0v",
                long_arg: &["unset", "chdir", "split-string", "argv0"],
                long_flags: &[
                    "ignore-environment",
                    "null",
                    "debug",
                    "default-signal",
                    "ignore-signal",
                    "block-signal",
                ],
                ..NO_OPTS
            };
            // `env -S 'cmd args'`: the string is split again by env's own rules; read it as shell text for blocks.
            let mut k = 1;
            while let Some(w) = words.get(k) {
                let w: &str = w;
                if w == "--" || w == "-" || !w.starts_with('-') {
                    break;
                }
                let split = if let Some(v) = w.strip_prefix("--split-string=") {
                    Some((v.to_owned(), k + 1))
                } else if w == "--split-string" {
                    Some((words.get(k + 1).map(|s| s.to_string()).unwrap_or_default(), k + 2))
                } else if !w.starts_with("--") && w.contains('S') {
                    let after = &w[w.find('S').expect("contains") + 1..];
                    if after.is_empty() {
                        Some((words.get(k + 1).map(|s| s.to_string()).unwrap_or_default(), k + 2))
                    } else {
                        Some((after.to_owned(), k + 1))
                    }
                } else {
                    None
                };
                if let Some((text, next)) = split {
                    let rest: Vec<&str> = words[next.min(words.len())..].iter().map(|w| &**w).collect();
                    return Step::Shell {
                        text: [text.as_str()].into_iter().chain(rest).collect::<Vec<_>>().join(" "),
                        via: Via::ArgsAdded,
                    };
                }
                let takes_arg = matches!(w, "-u" | "-C" | "-P" | "-a" | "--unset" | "--chdir" | "--argv0");
                k += if takes_arg { 2 } else { 1 };
            }
            let (mut at, changed) = match skip_opts(words, 1, &o) {
                Parsed::At(at, unknown) => (at, unknown || at > 1),
                Parsed::Stop => return Step::None,
            };
            let mut changed = changed;
            // A lone `-` is `-i`.
            while words.get(at).is_some_and(|w| w == "-") {
                at += 1;
                changed = true;
            }
            while words.get(at).is_some_and(|w| is_assignment_word(w)) {
                at += 1;
                changed = true;
            }
            cmd(
                Parsed::At(at, false),
                if changed { Via::Changed } else { Via::Transparent },
            )
        }
        "sudo" => {
            let o = Opts {
                arg: "ugpChDRrtTU",
                glued: "",
                flags: "AbEHnPSiskB",
                stop: "eKlvV",
                long_arg: &[
                    "user",
                    "group",
                    "host",
                    "prompt",
                    "close-from",
                    "chdir",
                    "chroot",
                    "role",
                    "type",
                    "command-timeout",
                    "other-user",
                ],
                long_flags: &[
                    "askpass",
                    "background",
                    "preserve-env",
                    "set-home",
                    "non-interactive",
                    "preserve-groups",
                    "stdin",
                    "login",
                    "shell",
                    "reset-timestamp",
                    "bell",
                ],
                long_stop: &["edit", "remove-timestamp", "list", "validate", "version", "help"],
            };
            match skip_opts(words, 1, &o) {
                Parsed::At(mut at, _) => {
                    while words.get(at).is_some_and(|w| is_assignment_word(w)) {
                        at += 1;
                    }
                    cmd(Parsed::At(at, false), Via::Changed)
                }
                Parsed::Stop => Step::None,
            }
        }
        "doas" => cmd(
            skip_opts(
                words,
                1,
                &Opts {
                    arg: "u",
                    flags: "n",
                    stop: "CLs",
                    ..NO_OPTS
                },
            ),
            Via::Changed,
        ),
        "chroot" => match skip_opts(
            words,
            1,
            &Opts {
                long_arg: &["userspec", "groups"],
                long_flags: &["skip-chdir"],
                ..NO_OPTS
            },
        ) {
            // The first operand is the new root; with no command, chroot runs an interactive shell.
            Parsed::At(at, _) => cmd(Parsed::At(at + 1, false), Via::Changed),
            Parsed::Stop => Step::None,
        },
        "su" | "runuser" => {
            // `su [opts] [-] [user [args]]` runs `-c STRING` with the user's shell; `runuser -u USER cmd args` runs
            // the command itself.
            let mut k = 1;
            let mut command: Option<String> = None;
            let mut user_opt = false;
            while let Some(w) = words.get(k) {
                let w: &str = w;
                if w == "--" {
                    k += 1;
                    break;
                }
                if let Some(v) = w
                    .strip_prefix("--command=")
                    .or_else(|| w.strip_prefix("--session-command="))
                {
                    command = Some(v.to_owned());
                    k += 1;
                } else if w == "-c" || w == "--command" || w == "--session-command" {
                    command = words.get(k + 1).map(|s| s.to_string());
                    k += 2;
                } else if w == "-u" || w == "--user" {
                    user_opt = true;
                    k += 2;
                } else if matches!(
                    w,
                    "-s" | "--shell" | "-g" | "--group" | "-G" | "--supp-group" | "-w" | "--whitelist-environment"
                ) {
                    k += 2;
                } else if w.starts_with('-') {
                    // Flags, and a lone `-` (login shell).
                    k += 1;
                } else if user_opt {
                    break;
                } else {
                    // The user name (for su); words after it go to the shell.
                    k += 1;
                }
            }
            if let Some(text) = command {
                Step::Shell {
                    text,
                    via: Via::Changed,
                }
            } else if user_opt && k < words.len() {
                Step::Command {
                    at: k,
                    via: Via::Changed,
                }
            } else {
                Step::None
            }
        }
        "ssh" => match skip_opts(
            words,
            1,
            &Opts {
                arg: "BbcDEeFIiJLlmOoPpQRSWw",
                flags: "46AaCfGgKkMNnqsTtVvXxYy",
                ..NO_OPTS
            },
        ) {
            // The first operand is the host; the rest is joined and run by the remote shell.
            Parsed::At(at, _) if at + 1 < words.len() => Step::Shell {
                text: join(&words[at + 1..]),
                via: Via::Changed,
            },
            _ => Step::None,
        },
        "watch" => {
            let o = Opts {
                arg: "nq",
                glued: "d",
                flags: "bcegtxprwC",
                long_arg: &["interval", "equexit"],
                long_flags: &[
                    "beep",
                    "color",
                    "errexit",
                    "chgexit",
                    "exec",
                    "no-title",
                    "precise",
                    "no-rerun",
                    "no-wrap",
                    "differences",
                ],
                ..NO_OPTS
            };
            let exec =
                words.iter().skip(1).take_while(|w| w.starts_with('-')).any(|w| {
                    &**w == "-x" || &**w == "--exec" || (w.len() > 1 && !w.starts_with("--") && w.contains('x'))
                });
            match skip_opts(words, 1, &o) {
                Parsed::At(at, unknown) if at < words.len() => {
                    let via = if unknown { Via::Changed } else { Via::Transparent };
                    if exec {
                        Step::Command { at, via: demote(via) }
                    } else {
                        // Without -x, watch joins its arguments and gives them to `sh -c`.
                        Step::Shell {
                            text: join(&words[at..]),
                            via: demote(via),
                        }
                    }
                }
                _ => Step::None,
            }
        }
        "xargs" => cmd(
            skip_opts(
                words,
                1,
                &Opts {
                    arg: "adEILnPs",
                    glued: "eil",
                    flags: "0oprtx",
                    long_arg: &[
                        "arg-file",
                        "delimiter",
                        "max-args",
                        "max-procs",
                        "max-chars",
                        "process-slot-var",
                    ],
                    long_flags: &[
                        "null",
                        "open-tty",
                        "interactive",
                        "no-run-if-empty",
                        "verbose",
                        "exit",
                        "show-limits",
                        "eof",
                        "replace",
                        "max-lines",
                    ],
                    ..NO_OPTS
                },
            ),
            Via::ArgsAdded,
        ),
        "find" => {
            let mut ranges = Vec::new();
            let mut k = 1;
            while k < words.len() {
                if matches!(&*words[k], "-exec" | "-execdir" | "-ok" | "-okdir") {
                    let start = k + 1;
                    let end = (start..words.len())
                        .find(|&e| &*words[e] == ";" || &*words[e] == "+")
                        .unwrap_or(words.len());
                    if start < end {
                        ranges.push((start, end));
                    }
                    k = end + 1;
                } else {
                    k += 1;
                }
            }
            if ranges.is_empty() {
                Step::None
            } else {
                Step::Ranges {
                    ranges,
                    via: Via::ArgsAdded,
                }
            }
        }
        "eval" => {
            if words.len() > 1 {
                Step::Shell {
                    text: join(&words[1..]),
                    via: Via::ArgsAdded,
                }
            } else {
                Step::None
            }
        }
        n if SHELLS.contains(&n) => {
            // `sh [opts] -c STRING [arg0 args...]`: options may come before or after -c; the string is the first
            // operand. Without -c the shell runs a file or its input: nothing to read here.
            let mut k = 1;
            let mut has_c = false;
            let mut unknown = false;
            while let Some(w) = words.get(k) {
                let w: &str = w;
                if w == "--" || w == "-" {
                    k += 1;
                    break;
                }
                if let Some(long) = w.strip_prefix("--") {
                    k += if matches!(long, "rcfile" | "init-file") { 2 } else { 1 };
                    unknown |= !matches!(
                        long,
                        "rcfile"
                            | "init-file"
                            | "norc"
                            | "noprofile"
                            | "login"
                            | "posix"
                            | "noediting"
                            | "restricted"
                            | "verbose"
                            | "debugger"
                            | "dump-strings"
                            | "pretty-print"
                    );
                    continue;
                }
                let Some(cluster) = w.strip_prefix('-').or_else(|| w.strip_prefix('+')) else {
                    break;
                };
                k += 1;
                for c in cluster.chars() {
                    match c {
                        'c' => has_c = true,
                        'o' | 'O' => k += 1,
                        'e' | 'x' | 'u' | 'v' | 'l' | 'i' | 'r' | 's' | 'n' | 'f' | 'h' | 'a' | 'b' | 'm' | 'p'
                        | 't' | 'k' | 'B' | 'C' | 'E' | 'H' | 'P' | 'T' => {}
                        _ => unknown = true,
                    }
                }
            }
            if !has_c {
                return Step::None;
            }
            match words.get(k) {
                Some(text) => Step::Shell {
                    text: text.to_string(),
                    via: demote(if unknown { Via::Changed } else { Via::Transparent }),
                },
                None => Step::None,
            }
        }
        _ => Step::None,
    }
}

impl Via {
    fn max_with(self, other: Via) -> Via {
        use Via::*;
        match (self, other) {
            (ArgsAdded, _) | (_, ArgsAdded) => ArgsAdded,
            (Changed, _) | (_, Changed) => Changed,
            _ => Transparent,
        }
    }
}

pub(super) fn join(words: &[Cow<'_, str>]) -> String {
    let mut s = String::with_capacity(words.iter().map(|w| w.len() + 1).sum());
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(w);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_steps() {
        let ws = |s: &str| -> Vec<Cow<'static, str>> { s.split(' ').map(|w| Cow::Owned(w.to_owned())).collect() };
        assert_eq!(
            step(&ws("sudo -u root x")),
            Step::Command {
                at: 3,
                via: Via::Changed
            }
        );
        assert_eq!(
            step(&ws("nohup x")),
            Step::Command {
                at: 1,
                via: Via::Transparent
            }
        );
        assert_eq!(
            step(&ws("xargs -i{} x")),
            Step::Command {
                at: 2,
                via: Via::ArgsAdded
            }
        );
        assert_eq!(step(&ws("xargs")), Step::None);
        assert_eq!(step(&ws("timeout 5")), Step::None);
        assert_eq!(
            step(&ws("bash -o pipefail -c x y")),
            Step::Shell {
                text: "x".into(),
                via: Via::Transparent
            }
        );
        assert_eq!(step(&ws("git status")), Step::None);
    }
}
