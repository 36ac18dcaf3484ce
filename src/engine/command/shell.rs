//! The shell reader: a command line split into its simple commands as non-interactive bash reads it.
//!
//! Written by hand for the static subset a policy can decide, and checked against bash itself
//! (`tests/shell_differential.rs`). [`parse`] splits a line into its simple commands the way bash reads it: quotes and escapes are resolved to the
//! literal words, `;` `&&` `||` `|` `|&` `&` and newlines split commands, `( )` and `{ }` groups, `$( )`, backticks
//! and `<( )` / `>( )` are read as nested lists whose commands are reported too. Whatever it cannot read exactly is
//! reported in `Line::unreadable`; a line with an unreadable part must never be allowed. Reading goes on after a
//! recoverable problem so the commands it can still see are checked against block rules.
//!
//! The reader works on bytes: every byte it treats specially is ASCII, and a UTF-8 sequence never contains an ASCII
//! byte, so slicing at those bytes always lands on character boundaries.

use std::borrow::Cow;

/// Why a line cannot be read exactly. The first one found is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Unterminated quote, substitution, group; an operator with no command; a stray `)` or `}`; NUL; a trailing `\`.
    Syntax,
    /// `if`, `then`, `else`, `elif`, `fi`, `for`, `select`, `while`, `until`, `do`, `done`, `case`, `esac`, `in`,
    /// `function`, `coproc`, `[[`, `]]` in command position, or a `;;` / `;&` case terminator.
    ControlStructure,
    /// `name() ...`
    FunctionDefinition,
    /// `<<` or `<<-`
    Heredoc,
    /// `$(( ))` or `(( ))`
    Arithmetic,
    /// `a=(1 2)` or `{fd}>file`
    BashExtension,
    /// A `$'...'` escape this reader does not decode (`\c`), or an invalid one.
    AnsiCEscape,
    /// Substitutions or `bash -c` strings nested more than `MAX_DEPTH` deep.
    TooDeep,
}

pub const MAX_DEPTH: u32 = 8;
/// `( )` and `{ }` groups nested deeper than this make the line unreadable (the reader recurses on them).
pub const MAX_GROUPS: u32 = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect<'a> {
    /// The file descriptor written before the operator (`2>`), if any.
    pub fd: Option<u32>,
    /// `<` `>` `>>` `>|` `<>` `<&` `>&` `&>` `&>>` `<<<` (`<<` and `<<-` make the line unreadable).
    pub op: &'static str,
    /// The target word after quote removal (for a heredoc, the delimiter).
    pub target: Cow<'a, str>,
    /// The target contains an expansion (or is a process substitution): its value is not known.
    pub dynamic: bool,
}

/// One simple command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimpleCommand<'a> {
    /// `NAME=value` words before the command name, as written after quote removal.
    pub assignments: Vec<Cow<'a, str>>,
    /// The command name and its arguments after quote removal. For a word with an expansion, the text of the word as
    /// written (so it can never equal a literal an allow pattern was written for), and `dynamic` is set.
    pub words: Vec<Cow<'a, str>>,
    pub redirects: Vec<Redirect<'a>>,
    /// Some word, assignment or redirect target contains `$…`, `${…}`, `$(…)`, `` `…` ``, `<(…)` or `$"…"`.
    pub dynamic: bool,
    /// Some word contains an unquoted `*`, `?` or `[` (pathname expansion may change it).
    pub glob: bool,
    /// Some word contains an unquoted `{` followed by an unquoted `}` (brace expansion may change it).
    pub brace: bool,
    /// Nesting depth: 0 at top level; +1 inside each `$( )`, backticks, `<( )`, heredoc body, or shell string.
    pub depth: u32,
    /// Commands joined by `|` or `|&` share this number, so block rules written for a pipeline (`curl *|*sh*`) can be
    /// tried on the pipeline as the reader saw it.
    pub pipeline: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line<'a> {
    /// Every simple command found, nested ones included (a substitution's commands come before the command that
    /// contains it).
    pub commands: Vec<SimpleCommand<'a>>,
    pub unreadable: Option<Unreadable>,
}

impl Line<'_> {
    pub fn into_owned(self) -> Line<'static> {
        Line {
            commands: self.commands.into_iter().map(own_command).collect(),
            unreadable: self.unreadable,
        }
    }
}

fn own<'b>(c: Cow<'_, str>) -> Cow<'b, str> {
    Cow::Owned(c.into_owned())
}

fn own_command<'b>(c: SimpleCommand<'_>) -> SimpleCommand<'b> {
    SimpleCommand {
        assignments: c.assignments.into_iter().map(own).collect(),
        words: c.words.into_iter().map(own).collect(),
        redirects: c
            .redirects
            .into_iter()
            .map(|r| Redirect {
                fd: r.fd,
                op: r.op,
                target: own(r.target),
                dynamic: r.dynamic,
            })
            .collect(),
        dynamic: c.dynamic,
        glob: c.glob,
        brace: c.brace,
        depth: c.depth,
        pipeline: c.pipeline,
    }
}

pub fn parse(line: &str) -> Line<'_> {
    parse_at_depth(line, 0)
}

/// Parses `line` as if it were nested `depth` levels deep (used for `bash -c` strings and `eval`).
pub fn parse_at_depth(line: &str, depth: u32) -> Line<'_> {
    parse_numbered(line, depth, 0).0
}

/// [`parse_at_depth`], numbering pipelines from `first_pipeline`; also returns the next free number.
fn parse_numbered(line: &str, depth: u32, first_pipeline: usize) -> (Line<'_>, usize) {
    let mut out = Line::default();
    if depth > MAX_DEPTH {
        out.unreadable = Some(Unreadable::TooDeep);
        return (out, first_pipeline);
    }
    let mut p = Parser {
        s: line,
        b: line.as_bytes(),
        i: 0,
        depth,
        groups: 0,
        out: &mut out,
        heredocs: Vec::new(),
        pipeline: first_pipeline,
        next_pipeline: first_pipeline + 1,
    };
    // A hard error (unterminated quote, ...) has already been recorded; the commands read so far are kept.
    let _ = p.list(End::Eof);
    let next = p.next_pipeline;
    (out, next)
}

/// A hard error: reading cannot go on.
struct Stop;

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Eof,
    Paren,
    Brace,
}

struct PendingHeredoc<'a> {
    delimiter: Cow<'a, str>,
    strip_tabs: bool,
    expand: bool,
}

struct Parser<'a, 'o> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: u32,
    groups: u32,
    out: &'o mut Line<'a>,
    heredocs: Vec<PendingHeredoc<'a>>,
    /// The pipeline the command being read belongs to, and the next unused number.
    pipeline: usize,
    next_pipeline: usize,
}

/// A word as read, before it is classified.
struct Word<'a> {
    text: Cow<'a, str>,
    /// The word as written, line continuations removed (bash removes them before it reads words).
    raw: Cow<'a, str>,
    quoted: bool,
    dynamic: bool,
    glob: bool,
    brace: bool,
}

#[derive(Default)]
struct Builder<'a> {
    cmd: SimpleCommand<'a>,
    /// A `( )` or `{ }` group stands in command position; only redirections may follow it.
    compound: bool,
    /// `!` or the `time` keyword seen at the start of the pipeline.
    bang: bool,
    timed: bool,
}

impl<'a> Builder<'a> {
    /// Only `!` or `time`: bash accepts that before `;`, a newline or the end, and nowhere else.
    fn modifiers_only(&self) -> bool {
        self.is_empty() && (self.bang || self.timed)
    }

    fn is_empty(&self) -> bool {
        !self.compound && self.cmd.words.is_empty() && self.cmd.assignments.is_empty() && self.cmd.redirects.is_empty()
    }
}

const fn is_meta(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')')
}

const fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

const fn is_name(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "select", "while", "until", "do", "done", "case", "esac", "in",
    "function", "coproc", "[[", "]]",
];

impl<'a> Parser<'a, '_> {
    fn peek(&self, k: usize) -> Option<u8> {
        self.b.get(self.i + k).copied()
    }

    fn flag(&mut self, why: Unreadable) {
        if self.out.unreadable.is_none() {
            self.out.unreadable = Some(why);
        }
    }

    fn stop(&mut self, why: Unreadable) -> Stop {
        self.flag(why);
        Stop
    }

    fn skip_blanks(&mut self) {
        while let Some(c) = self.peek(0) {
            match c {
                b' ' | b'\t' => self.i += 1,
                b'\\' if self.peek(1) == Some(b'\n') => self.i += 2,
                _ => break,
            }
        }
    }

    /// Ends the command being built. Returns whether there was one.
    fn finish(&mut self, cur: &mut Builder<'a>) -> bool {
        let had = !cur.is_empty() || cur.bang || cur.timed;
        let b = std::mem::take(cur);
        // A group's redirections are kept as a command with no words, so they are decided too.
        if !b.cmd.words.is_empty() || !b.cmd.assignments.is_empty() || !b.cmd.redirects.is_empty() {
            let mut cmd = b.cmd;
            cmd.depth = self.depth;
            cmd.pipeline = self.pipeline;
            self.out.commands.push(cmd);
        }
        had
    }

    /// Reads a list until `end`. On return with `Ok`, the terminator has been consumed.
    fn list(&mut self, end: End) -> Result<(), Stop> {
        let outer = self.pipeline;
        self.new_pipeline();
        let read = self.list_items(end);
        self.pipeline = outer;
        read
    }

    fn new_pipeline(&mut self) {
        self.pipeline = self.next_pipeline;
        self.next_pipeline += 1;
    }

    fn list_items(&mut self, end: End) -> Result<(), Stop> {
        let mut cur = Builder::default();
        // After `&&`, `||`, `|`, `|&` a command must follow (newlines may come first).
        let mut need_cmd = false;
        // Just after `|` or `|&`: a `!` may not start the next command.
        let mut after_pipe = false;
        loop {
            self.skip_blanks();
            let Some(c) = self.peek(0) else {
                let had = self.finish(&mut cur);
                if need_cmd && !had || end != End::Eof {
                    return Err(self.stop(Unreadable::Syntax));
                }
                return Ok(());
            };
            match c {
                0 => return Err(self.stop(Unreadable::Syntax)),
                b'#' => {
                    while self.peek(0).is_some_and(|c| c != b'\n') {
                        self.i += 1;
                    }
                }
                b'\n' => {
                    self.i += 1;
                    let had = self.finish(&mut cur);
                    if !need_cmd {
                        self.new_pipeline();
                    }
                    if had {
                        need_cmd = false;
                        after_pipe = false;
                    }
                    self.read_heredoc_bodies()?;
                }
                b';' => {
                    if matches!(self.peek(1), Some(b';' | b'&')) {
                        // `;;`, `;&`, `;;&` only make sense inside `case`.
                        self.flag(Unreadable::ControlStructure);
                        self.i += 2;
                        self.finish(&mut cur);
                        continue;
                    }
                    self.i += 1;
                    if !self.finish(&mut cur) {
                        self.flag(Unreadable::Syntax);
                    }
                    self.new_pipeline();
                    need_cmd = false;
                    after_pipe = false;
                }
                b'&' if self.peek(1) == Some(b'>') => self.redirect(&mut cur, None)?,
                b'&' | b'|' => {
                    let two = self.peek(1);
                    let (len, chains) = match (c, two) {
                        (b'&', Some(b'&')) | (b'|', Some(b'|')) | (b'|', Some(b'&')) => (2, true),
                        (b'|', _) => (1, true),
                        _ => (1, false), // `&`
                    };
                    self.i += len;
                    if cur.modifiers_only() || !self.finish(&mut cur) {
                        self.flag(Unreadable::Syntax);
                    }
                    need_cmd = chains;
                    after_pipe = c == b'|' && two != Some(b'|');
                    if !after_pipe {
                        self.new_pipeline();
                    }
                }
                b'<' | b'>' if self.peek(1) == Some(b'(') => self.word_into(&mut cur)?,
                b'<' | b'>' => self.redirect(&mut cur, None)?,
                b'(' => {
                    if cur.is_empty() {
                        if self.peek(1) == Some(b'(') {
                            // `(( expr ))`
                            self.flag(Unreadable::Arithmetic);
                            self.skip_arithmetic()?;
                            cur.compound = true;
                            continue;
                        }
                        self.i += 1;
                        self.group(End::Paren)?;
                        cur.compound = true;
                    } else if !cur.compound && cur.cmd.words.len() == 1 && cur.cmd.assignments.is_empty() {
                        // `name ( )`: a function definition; its body is read as a group below.
                        self.flag(Unreadable::FunctionDefinition);
                        self.i += 1;
                        self.skip_blanks();
                        if self.peek(0) != Some(b')') {
                            return Err(self.stop(Unreadable::Syntax));
                        }
                        self.i += 1;
                        cur = Builder::default();
                    } else {
                        // `a=(1 2)` arrives here as the word `a=` followed by `(`.
                        let why = if cur.cmd.words.is_empty() && !cur.cmd.assignments.is_empty() {
                            Unreadable::BashExtension
                        } else {
                            Unreadable::Syntax
                        };
                        return Err(self.stop(why));
                    }
                }
                b')' if end == End::Eof && self.out.unreadable == Some(Unreadable::ControlStructure) => {
                    // A `case` pattern's `)`: already unreadable; go on reading for blocks.
                    self.i += 1;
                    self.finish(&mut cur);
                    need_cmd = false;
                }
                b')' => {
                    if end == End::Paren {
                        self.i += 1;
                        if cur.modifiers_only() {
                            self.flag(Unreadable::Syntax);
                        }
                        let had = self.finish(&mut cur);
                        if need_cmd && !had {
                            self.flag(Unreadable::Syntax);
                        }
                        return Ok(());
                    }
                    return Err(self.stop(Unreadable::Syntax));
                }
                _ => {
                    let w = self.word()?;
                    let in_command_position = cur.cmd.words.is_empty() && !cur.compound;
                    if in_command_position && !w.quoted && cur.cmd.assignments.is_empty() {
                        match &*w.raw {
                            "{" => {
                                self.group(End::Brace)?;
                                cur.compound = true;
                                continue;
                            }
                            "}" => {
                                if end == End::Brace {
                                    if cur.modifiers_only() {
                                        self.flag(Unreadable::Syntax);
                                    }
                                    let had = self.finish(&mut cur);
                                    if need_cmd && !had {
                                        self.flag(Unreadable::Syntax);
                                    }
                                    return Ok(());
                                }
                                return Err(self.stop(Unreadable::Syntax));
                            }
                            "!" if cur.is_empty() => {
                                if after_pipe && !cur.bang && !cur.timed {
                                    return Err(self.stop(Unreadable::Syntax));
                                }
                                cur.bang = true;
                                continue;
                            }
                            // bash's `time [-p] [--] pipeline` keyword, only at the start of a pipeline (after `|`
                            // it is the `time` program, decided as a wrapper).
                            "time" if cur.is_empty() && !after_pipe => {
                                cur.timed = true;
                                self.skip_blanks();
                                for opt in ["-p", "--"] {
                                    let rest = &self.b[self.i..];
                                    if rest.starts_with(opt.as_bytes()) && rest.get(2).is_none_or(|&c| is_meta(c)) {
                                        self.i += 2;
                                        self.skip_blanks();
                                    }
                                }
                                continue;
                            }
                            k if KEYWORDS.contains(&k) => {
                                // Not read; the words around it are still read as commands so blocks are seen.
                                self.flag(Unreadable::ControlStructure);
                                self.finish(&mut cur);
                                need_cmd = false;
                                continue;
                            }
                            _ => {}
                        }
                    }
                    if cur.compound {
                        return Err(self.stop(Unreadable::Syntax));
                    }
                    // An IO number: digits immediately followed by `<` or `>`.
                    if !w.quoted
                        && w.raw.bytes().all(|c| c.is_ascii_digit())
                        && matches!(self.peek(0), Some(b'<' | b'>'))
                    {
                        let fd = w.raw.parse().ok();
                        if fd.is_none() {
                            return Err(self.stop(Unreadable::Syntax));
                        }
                        self.redirect(&mut cur, fd)?;
                        continue;
                    }
                    // bash's `{name}>file`.
                    if !w.quoted
                        && w.raw.len() > 2
                        && w.raw.starts_with('{')
                        && w.raw.ends_with('}')
                        && matches!(self.peek(0), Some(b'<' | b'>'))
                    {
                        return Err(self.stop(Unreadable::BashExtension));
                    }
                    self.push_word(&mut cur, w, in_command_position);
                }
            }
        }
    }

    fn group(&mut self, end: End) -> Result<(), Stop> {
        if self.groups >= MAX_GROUPS {
            return Err(self.stop(Unreadable::TooDeep));
        }
        self.groups += 1;
        let before = self.out.commands.len();
        let r = self.list(end);
        self.groups -= 1;
        r?;
        // `( )` and `{ }` must hold a command (`$( )` and `<( )` may be empty). A group holding only `!` is valid
        // in bash but refused here too.
        if self.out.commands.len() == before {
            self.flag(Unreadable::Syntax);
        }
        Ok(())
    }

    fn depth_guard(&mut self) -> Result<(), Stop> {
        if self.depth >= MAX_DEPTH {
            Err(self.stop(Unreadable::TooDeep))
        } else {
            Ok(())
        }
    }

    fn push_word(&mut self, cur: &mut Builder<'a>, w: Word<'a>, command_position: bool) {
        cur.cmd.dynamic |= w.dynamic;
        cur.cmd.glob |= w.glob;
        cur.cmd.brace |= w.brace;
        if command_position && is_assignment(&w.raw) {
            cur.cmd.assignments.push(w.text);
        } else if w.dynamic {
            cur.cmd.words.push(w.raw);
        } else {
            cur.cmd.words.push(w.text);
        }
    }

    /// Reads a word that starts a process substitution and pushes it.
    fn word_into(&mut self, cur: &mut Builder<'a>) -> Result<(), Stop> {
        if cur.compound {
            return Err(self.stop(Unreadable::Syntax));
        }
        let command_position = cur.cmd.words.is_empty();
        let w = self.word()?;
        self.push_word(cur, w, command_position);
        Ok(())
    }

    fn redirect(&mut self, cur: &mut Builder<'a>, fd: Option<u32>) -> Result<(), Stop> {
        let rest = &self.b[self.i..];
        const OPS: &[&str] = &["&>>", "<<<", "<<-", "&>", ">>", ">|", "<>", "<&", ">&", "<<", "<", ">"];
        let op = *OPS
            .iter()
            .find(|op| rest.starts_with(op.as_bytes()))
            .expect("called at < > or &>");
        self.i += op.len();
        self.skip_blanks();
        match self.peek(0) {
            // `#` at the start of a word begins a comment: the operator has no target.
            None | Some(b'#') => return Err(self.stop(Unreadable::Syntax)),
            Some(c) if is_meta(c) && !(matches!(c, b'<' | b'>') && self.peek(1) == Some(b'(')) => {
                return Err(self.stop(Unreadable::Syntax));
            }
            _ => {}
        }
        let w = self.word()?;
        if op == "<<" || op == "<<-" {
            self.flag(Unreadable::Heredoc);
            self.heredocs.push(PendingHeredoc {
                expand: !w.quoted,
                strip_tabs: op == "<<-",
                delimiter: w.text.clone(),
            });
        }
        cur.cmd.dynamic |= w.dynamic;
        let target = if w.dynamic { w.raw } else { w.text };
        cur.cmd.redirects.push(Redirect {
            fd,
            op,
            target,
            dynamic: w.dynamic,
        });
        Ok(())
    }

    /// After a newline: consumes the bodies of the heredocs started on the line just ended, reading the
    /// substitutions of unquoted ones so their commands are checked too.
    fn read_heredoc_bodies(&mut self) -> Result<(), Stop> {
        for h in std::mem::take(&mut self.heredocs) {
            let body_start = self.i;
            let mut body_end = self.b.len();
            let mut found = false;
            while self.i < self.b.len() {
                let line_start = self.i;
                let line_end = self.b[self.i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(self.b.len(), |k| self.i + k);
                let mut line = &self.s[line_start..line_end];
                if h.strip_tabs {
                    line = line.trim_start_matches('\t');
                }
                self.i = (line_end + 1).min(self.b.len());
                if line == h.delimiter {
                    body_end = line_start;
                    found = true;
                    break;
                }
            }
            if !found {
                self.i = self.b.len();
            }
            if h.expand {
                self.scan_expansions(body_start, body_end)?;
            }
        }
        Ok(())
    }

    /// Reads the `$( )`, `${ }` and backtick substitutions in heredoc text `[from, to)` for their commands.
    fn scan_expansions(&mut self, from: usize, to: usize) -> Result<(), Stop> {
        let saved = self.i;
        self.i = from;
        let mut scratch = WordState::default();
        while self.i < to {
            match self.b[self.i] {
                b'\\' => self.i += 2,
                b'$' => {
                    self.dollar(&mut scratch, true)?;
                    scratch.owned = None;
                }
                b'`' => self.backtick()?,
                _ => self.i += 1,
            }
        }
        self.i = saved;
        Ok(())
    }

    fn skip_arithmetic(&mut self) -> Result<(), Stop> {
        // At `((` or `$((`'s `((`: skip to the matching `))`, counting parentheses.
        let mut depth = 0i32;
        while let Some(c) = self.peek(0) {
            self.i += 1;
            match c {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        Err(self.stop(Unreadable::Syntax))
    }

    /// Reads one word at `self.i` (which is not a blank and not an operator, or is `<(` / `>(`).
    fn word(&mut self) -> Result<Word<'a>, Stop> {
        let start = self.i;
        let mut w = WordState::default();
        let mut at_start = true;
        while let Some(c) = self.peek(0) {
            match c {
                b'<' | b'>' if at_start && self.peek(1) == Some(b'(') => {
                    // Process substitution: a nested list, its value a file name not known here.
                    w.materialize(self.s, start, self.i);
                    self.i += 2;
                    self.nested_list()?;
                    w.dynamic = true;
                }
                c if is_meta(c) => break,
                0 => return Err(self.stop(Unreadable::Syntax)),
                b'\\' => {
                    w.materialize(self.s, start, self.i);
                    match self.peek(1) {
                        None => return Err(self.stop(Unreadable::Syntax)),
                        // A line continuation is not quoting: `{\<newline>` is still the word `{`.
                        Some(b'\n') => self.i += 2,
                        Some(_) => {
                            w.quoted = true;
                            let ch = self.s[self.i + 1..].chars().next().expect("in bounds");
                            w.push_char(ch);
                            self.i += 1 + ch.len_utf8();
                        }
                    }
                }
                b'\'' => {
                    w.materialize(self.s, start, self.i);
                    w.quoted = true;
                    let Some(len) = self.b[self.i + 1..].iter().position(|&c| c == b'\'') else {
                        return Err(self.stop(Unreadable::Syntax));
                    };
                    w.push_str(&self.s[self.i + 1..self.i + 1 + len]);
                    self.i += len + 2;
                }
                b'"' => {
                    w.materialize(self.s, start, self.i);
                    w.quoted = true;
                    self.i += 1;
                    self.double_quoted(&mut w)?;
                }
                b'$' => {
                    w.materialize(self.s, start, self.i);
                    self.dollar(&mut w, false)?;
                }
                b'`' => {
                    w.materialize(self.s, start, self.i);
                    self.backtick()?;
                    w.dynamic = true;
                }
                _ => {
                    // A run of plain bytes.
                    let run_start = self.i;
                    while let Some(c) = self.peek(0) {
                        match c {
                            b'*' | b'?' | b'[' => w.glob = true,
                            b'{' => w.open_brace = true,
                            b'}' if w.open_brace => w.brace = true,
                            0 => return Err(self.stop(Unreadable::Syntax)),
                            c if is_meta(c) || matches!(c, b'\\' | b'\'' | b'"' | b'$' | b'`') => break,
                            _ => {}
                        }
                        self.i += 1;
                    }
                    if w.owned.is_some() {
                        w.push_str(&self.s[run_start..self.i]);
                    }
                }
            }
            at_start = false;
        }
        let raw = &self.s[start..self.i];
        let raw: Cow<'a, str> = if raw.contains("\\\n") {
            Cow::Owned(raw.replace("\\\n", ""))
        } else {
            Cow::Borrowed(raw)
        };
        if raw.contains('~') && tilde_expands(&raw) {
            w.dynamic = true;
        }
        let text = match w.owned {
            Some(s) => Cow::Owned(s),
            None => raw.clone(),
        };
        Ok(Word {
            text,
            raw,
            quoted: w.quoted,
            dynamic: w.dynamic,
            glob: w.glob,
            brace: w.brace,
        })
    }

    /// Inside `"..."`, after the opening quote; consumes the closing one.
    fn double_quoted(&mut self, w: &mut WordState) -> Result<(), Stop> {
        loop {
            let Some(c) = self.peek(0) else {
                return Err(self.stop(Unreadable::Syntax));
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(());
                }
                0 => return Err(self.stop(Unreadable::Syntax)),
                b'\\' => match self.peek(1) {
                    Some(b'\n') => self.i += 2,
                    Some(c @ (b'$' | b'`' | b'"' | b'\\')) => {
                        w.push_char(c as char);
                        self.i += 2;
                    }
                    Some(_) => {
                        w.push_char('\\');
                        self.i += 1;
                    }
                    None => return Err(self.stop(Unreadable::Syntax)),
                },
                b'$' => self.dollar(w, true)?,
                b'`' => {
                    self.backtick()?;
                    w.dynamic = true;
                }
                _ => {
                    let run_start = self.i;
                    while self
                        .peek(0)
                        .is_some_and(|c| !matches!(c, b'"' | b'\\' | b'$' | b'`' | 0))
                    {
                        self.i += 1;
                    }
                    w.push_str(&self.s[run_start..self.i]);
                }
            }
        }
    }

    /// At `$`.
    fn dollar(&mut self, w: &mut WordState, in_dq: bool) -> Result<(), Stop> {
        match self.peek(1) {
            Some(b'(') if self.peek(2) == Some(b'(') => {
                self.flag(Unreadable::Arithmetic);
                self.i += 1;
                self.skip_arithmetic()?;
                w.dynamic = true;
            }
            Some(b'(') => {
                self.i += 2;
                self.nested_list()?;
                w.dynamic = true;
            }
            Some(b'{') if matches!(self.peek(2), Some(b' ' | b'\t' | b'\n' | b'|')) => {
                // bash 5.3's `${ list; }` and `${| list; }` run commands in the current shell.
                self.i += if self.peek(2) == Some(b'|') { 3 } else { 2 };
                self.depth_guard()?;
                self.depth += 1;
                let r = self.group(End::Brace);
                self.depth -= 1;
                r?;
                w.dynamic = true;
            }
            Some(b'{') => {
                self.i += 2;
                self.braced_parameter()?;
                w.dynamic = true;
            }
            Some(b'\'') if !in_dq => {
                self.i += 2;
                self.ansi_c(w)?;
                w.quoted = true;
            }
            Some(b'"') if !in_dq => {
                // `$"..."`: translated by the locale; its value is not known.
                self.i += 2;
                w.quoted = true;
                self.double_quoted(w)?;
                w.dynamic = true;
            }
            Some(c) if is_name_start(c) => {
                self.i += 1;
                while self.peek(0).is_some_and(is_name) {
                    self.i += 1;
                }
                w.dynamic = true;
            }
            Some(c) if c.is_ascii_digit() || matches!(c, b'@' | b'*' | b'#' | b'?' | b'-' | b'$' | b'!') => {
                self.i += 2;
                w.dynamic = true;
            }
            _ => {
                // A `$` that starts no expansion is literal.
                w.push_char('$');
                self.i += 1;
            }
        }
        Ok(())
    }

    /// After `$(`: the substitution's commands are read as a nested list.
    fn nested_list(&mut self) -> Result<(), Stop> {
        self.depth_guard()?;
        self.depth += 1;
        let r = self.list(End::Paren);
        self.depth -= 1;
        r
    }

    /// After `${`: skips to the matching `}`, reading any substitutions inside for their commands.
    fn braced_parameter(&mut self) -> Result<(), Stop> {
        let mut scratch = WordState {
            owned: Some(String::new()),
            ..WordState::default()
        };
        let mut open = 1u32;
        loop {
            let Some(c) = self.peek(0) else {
                return Err(self.stop(Unreadable::Syntax));
            };
            match c {
                b'}' => {
                    self.i += 1;
                    open -= 1;
                    if open == 0 {
                        return Ok(());
                    }
                }
                b'\\' => self.i += 2,
                b'\'' => {
                    let Some(len) = self.b[self.i + 1..].iter().position(|&c| c == b'\'') else {
                        return Err(self.stop(Unreadable::Syntax));
                    };
                    self.i += len + 2;
                }
                b'"' => {
                    self.i += 1;
                    self.double_quoted(&mut scratch)?;
                }
                b'$' if self.peek(1) == Some(b'{') => {
                    self.i += 2;
                    open += 1;
                }
                b'$' => self.dollar(&mut scratch, true)?,
                b'`' => self.backtick()?,
                _ => self.i += 1,
            }
            if let Some(s) = scratch.owned.as_mut() {
                s.clear();
            }
        }
    }

    /// At a backtick: reads to the closing one, undoes the backslash escapes, and reads the text as a nested line.
    fn backtick(&mut self) -> Result<(), Stop> {
        self.depth_guard()?;
        let mut inner = String::new();
        let mut j = self.i + 1;
        loop {
            let Some(&c) = self.b.get(j) else {
                return Err(self.stop(Unreadable::Syntax));
            };
            match c {
                b'`' => break,
                b'\\' if matches!(self.b.get(j + 1), Some(b'$' | b'`' | b'\\')) => {
                    inner.push(self.b[j + 1] as char);
                    j += 2;
                }
                _ => {
                    let ch = self.s[j..].chars().next().expect("in bounds");
                    inner.push(ch);
                    j += ch.len_utf8();
                }
            }
        }
        self.i = j + 1;
        let (nested, next) = parse_numbered(&inner, self.depth + 1, self.next_pipeline);
        self.next_pipeline = next;
        let nested = nested.into_owned();
        self.out.commands.extend(nested.commands);
        if let Some(why) = nested.unreadable {
            self.flag(why);
        }
        Ok(())
    }

    /// After `$'`: decodes to the closing quote.
    fn ansi_c(&mut self, w: &mut WordState) -> Result<(), Stop> {
        loop {
            let Some(c) = self.peek(0) else {
                return Err(self.stop(Unreadable::Syntax));
            };
            match c {
                b'\'' => {
                    self.i += 1;
                    return Ok(());
                }
                b'\\' => {
                    let Some(e) = self.peek(1) else {
                        return Err(self.stop(Unreadable::Syntax));
                    };
                    if !e.is_ascii() {
                        // A backslash before a non-ASCII character is no escape this reader decodes. Step over the
                        // whole character, never into it.
                        let ch = self.s[self.i + 1..].chars().next().expect("in bounds");
                        self.i += 1 + ch.len_utf8();
                        self.flag(Unreadable::AnsiCEscape);
                        w.dynamic = true;
                        continue;
                    }
                    self.i += 2;
                    let simple = match e {
                        b'a' => Some('\x07'),
                        b'b' => Some('\x08'),
                        b'e' | b'E' => Some('\x1b'),
                        b'f' => Some('\x0c'),
                        b'n' => Some('\n'),
                        b'r' => Some('\r'),
                        b't' => Some('\t'),
                        b'v' => Some('\x0b'),
                        b'\\' => Some('\\'),
                        b'\'' => Some('\''),
                        b'"' => Some('"'),
                        b'?' => Some('?'),
                        _ => None,
                    };
                    if let Some(ch) = simple {
                        w.push_char(ch);
                        continue;
                    }
                    let (radix, max) = match e {
                        b'0'..=b'7' => {
                            self.i -= 1;
                            (8, 3)
                        }
                        b'x' => (16, 2),
                        b'u' => (16, 4),
                        b'U' => (16, 8),
                        _ => {
                            // `\c` and unknown escapes: not decoded here.
                            self.flag(Unreadable::AnsiCEscape);
                            w.dynamic = true;
                            continue;
                        }
                    };
                    let digits_start = self.i;
                    while self.i - digits_start < max && self.peek(0).is_some_and(|c| (c as char).is_digit(radix)) {
                        self.i += 1;
                    }
                    let digits = &self.s[digits_start..self.i];
                    let value = u32::from_str_radix(digits, radix).ok();
                    match value.and_then(char::from_u32) {
                        // bash keeps `\x` with no digits as is; a NUL ends the string. Neither is read here.
                        Some(ch)
                            if !digits.is_empty()
                                && ch != '\0'
                                && (!(e == b'x' || e.is_ascii_digit()) || ch.is_ascii()) =>
                        {
                            w.push_char(ch)
                        }
                        _ => {
                            // \xHH and octal above 0x7f are raw bytes, not characters.
                            self.flag(Unreadable::AnsiCEscape);
                            w.dynamic = true;
                        }
                    }
                }
                _ => {
                    let ch = self.s[self.i..].chars().next().expect("in bounds");
                    w.push_char(ch);
                    self.i += ch.len_utf8();
                }
            }
        }
    }
}

#[derive(Default)]
struct WordState {
    owned: Option<String>,
    quoted: bool,
    dynamic: bool,
    glob: bool,
    open_brace: bool,
    brace: bool,
}

impl WordState {
    /// Switches from borrowing the source to building an owned word, keeping what was read so far.
    fn materialize(&mut self, s: &str, start: usize, at: usize) {
        if self.owned.is_none() {
            self.owned = Some(s[start..at].to_owned());
        }
    }

    fn push_str(&mut self, t: &str) {
        self.owned.get_or_insert_with(String::new).push_str(t);
    }

    fn push_char(&mut self, c: char) {
        self.owned.get_or_insert_with(String::new).push(c);
    }
}

/// `NAME=...` or `NAME+=...` with an unquoted name (`NAME[sub]=` is a bash array element: also an assignment).
fn is_assignment(raw: &str) -> bool {
    let b = raw.as_bytes();
    if b.is_empty() || !is_name_start(b[0]) {
        return false;
    }
    let mut k = 1;
    while k < b.len() && is_name(b[k]) {
        k += 1;
    }
    if k < b.len() && b[k] == b'[' {
        match b[k..].iter().position(|&c| c == b']') {
            Some(e) => k += e + 1,
            None => return false,
        }
    }
    if k < b.len() && b[k] == b'+' {
        k += 1;
    }
    k < b.len() && b[k] == b'='
}

/// Whether bash's tilde expansion changes the word to something other than `$HOME`: `~user`, `~+`, `~-`, `~N`.
/// A tilde-prefix is an unquoted `~` at the start of the word or, in a word shaped like an assignment (bash does this
/// for arguments too, outside POSIX mode), after the first `=` or any `:`, up to the next `/` (or `:`). A bare `~` or
/// `~/...` stands for `$HOME` and is kept as written.
fn tilde_expands(raw: &str) -> bool {
    let b = raw.as_bytes();
    let prefix_changes = |at: usize, stop_at_colon: bool| -> bool {
        let rest = &b[at + 1..];
        let end = rest
            .iter()
            .position(|&c| c == b'/' || stop_at_colon && c == b':')
            .unwrap_or(rest.len());
        let prefix = &rest[..end];
        // A quoted character anywhere in the prefix turns the expansion off.
        !prefix.is_empty() && !prefix.iter().any(|c| matches!(c, b'\\' | b'\'' | b'"' | b'$' | b'`'))
    };
    if b[0] == b'~' && prefix_changes(0, false) {
        return true;
    }
    if !is_assignment(raw) {
        return false;
    }
    let eq = raw.find('=').expect("an assignment has =");
    let mut quoted = false;
    for (k, &c) in b.iter().enumerate().skip(eq) {
        match c {
            b'\'' | b'"' => quoted = !quoted,
            b'~' if !quoted && (b[k - 1] == b'=' && k == eq + 1 || b[k - 1] == b':') && prefix_changes(k, true) => {
                return true;
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words of each command, in order, for a line that must be readable.
    fn words(line: &str) -> Vec<Vec<String>> {
        let p = parse(line);
        assert_eq!(p.unreadable, None, "{line:?} should be readable");
        p.commands
            .iter()
            .map(|c| c.words.iter().map(|w| w.to_string()).collect())
            .collect()
    }

    fn unreadable(line: &str) -> Unreadable {
        parse(line)
            .unreadable
            .unwrap_or_else(|| panic!("{line:?} should be unreadable"))
    }

    macro_rules! w {
        ($($c:expr),* $(,)?) => { vec![$($c.iter().map(|s: &&str| s.to_string()).collect::<Vec<String>>()),*] };
    }

    #[test]
    fn operators_split_commands() {
        assert_eq!(words("a;b"), w![["a"], ["b"]]);
        assert_eq!(words("a&&b||c|d|&e&f"), w![["a"], ["b"], ["c"], ["d"], ["e"], ["f"]]);
        assert_eq!(words("a &"), w![["a"]]);
        assert_eq!(words("a\n\nb\n"), w![["a"], ["b"]]);
        assert_eq!(words("a &&\n b"), w![["a"], ["b"]]);
        assert_eq!(words("a |\n\n b"), w![["a"], ["b"]]);
        assert_eq!(words("! a | b"), w![["a"], ["b"]]);
        assert_eq!(words("a # b; c"), w![["a"]]);
        assert_eq!(words("a#b"), w![["a#b"]]);
        assert_eq!(words("(a; (b)) | { c; }"), w![["a"], ["b"], ["c"]]);
        assert_eq!(words("a \\\n b"), w![["a", "b"]]);
    }

    #[test]
    fn quotes_and_escapes_resolve_to_the_literal_word() {
        assert_eq!(words(r#"a 'b c' "d e" f\ g"#), w![["a", "b c", "d e", "f g"]]);
        assert_eq!(
            words(r#"a "x\"y" "x\\y" "x\y" "x\$y" 'x\y'"#),
            w![["a", "x\"y", "x\\y", "x\\y", "x$y", "x\\y"]]
        );
        assert_eq!(words(r#"ap""ply a''b ''"#), w![["apply", "ab", ""]]);
        assert_eq!(words(r"\t\e\r\r\a\f\o\r\m"), w![["terraform"]]);
        assert_eq!(words("a \"b\\\nc\" 'd\ne'"), w![["a", "bc", "d\ne"]]);
        assert_eq!(words(r"a $'x\ty\x41\101\u00e9\'' $'\\'"), w![["a", "x\tyAAé'", "\\"]]);
        assert_eq!(words("a $ b$ \"c$\" \"$\""), w![["a", "$", "b$", "c$", "$"]]);
        assert_eq!(words("a é 'ü' \"ß\""), w![["a", "é", "ü", "ß"]]);
        assert_eq!(words("a ~/x x=~ b=c"), w![["a", "~/x", "x=~", "b=c"]]);
        assert_eq!(words("a \"a;b|c&d>e<f(g)h\""), w![["a", "a;b|c&d>e<f(g)h"]]);
        assert_eq!(words("a }"), w![["a", "}"]]);
        assert_eq!(words("a $() <()"), w![["a", "$()", "<()"]]);
    }

    #[test]
    fn plain_words_are_borrowed_not_copied() {
        let p = parse("terraform plan -out x");
        assert!(p.commands[0].words.iter().all(|w| matches!(w, Cow::Borrowed(_))));
    }

    #[test]
    fn assignments_and_redirections_are_kept_apart() {
        let p = parse("A=1 B+=2 c[1]=3 cmd D=4 2>&1 >/dev/null <in 3<>f >>log &>all");
        let c = &p.commands[0];
        assert_eq!(c.assignments, ["A=1", "B+=2", "c[1]=3"]);
        assert_eq!(c.words, ["cmd", "D=4"]);
        let r: Vec<String> = c
            .redirects
            .iter()
            .map(|r| format!("{:?}{}{}", r.fd, r.op, r.target))
            .collect();
        assert_eq!(
            r,
            [
                "Some(2)>&1",
                "None>/dev/null",
                "None<in",
                "Some(3)<>f",
                "None>>log",
                "None&>all"
            ]
        );
        assert_eq!(words("\"A=1\" cmd"), w![["A=1", "cmd"]]);
        assert_eq!(words("a=1"), w![[]]);
        assert_eq!(words("x 2>/dev/null"), w![["x"]]);
        assert_eq!(words("x 2 >f"), w![["x", "2"]]);
    }

    #[test]
    fn expansions_make_a_command_dynamic_and_nested_commands_are_reported() {
        let p = parse("echo \"a $(terraform apply) b\" ${x:-$(rm -rf /)} $HOME `id` <(ls) >(wc)");
        assert_eq!(p.unreadable, None);
        let all: Vec<String> = p.commands.iter().map(|c| c.words.join(" ")).collect();
        assert_eq!(
            all,
            [
                "terraform apply",
                "rm -rf /",
                "id",
                "ls",
                "wc",
                "echo \"a $(terraform apply) b\" ${x:-$(rm -rf /)} $HOME `id` <(ls) >(wc)"
            ]
        );
        assert!(p.commands.last().unwrap().dynamic);
        assert_eq!(p.commands[0].depth, 1);
        assert!(parse("a $1").commands[0].dynamic);
        assert!(parse("a \"$@\"").commands[0].dynamic);
        assert!(parse("a $\"x\"").commands[0].dynamic);
        assert!(!parse("a '$x'").commands[0].dynamic);
        assert!(!parse("a \\$x").commands[0].dynamic);
        assert!(parse("a *.py").commands[0].glob);
        assert!(parse("a [ab]").commands[0].glob);
        assert!(!parse("a '*'").commands[0].glob);
        assert!(parse("git {push,--force}").commands[0].brace);
        assert!(!parse("a '{x,y}'").commands[0].brace);
        // backticks inside backticks, escaped
        let p = parse("a `b \\`c\\``");
        assert_eq!(
            p.commands.iter().map(|c| c.words[0].to_string()).collect::<Vec<_>>(),
            ["c", "b", "a"]
        );
    }

    #[test]
    fn what_is_not_read() {
        use Unreadable::*;
        for (line, why) in [
            ("echo 'x", Syntax),
            ("echo \"x", Syntax),
            ("echo $(x", Syntax),
            ("echo `x", Syntax),
            ("echo ${x", Syntax),
            ("(a", Syntax),
            ("{ a; ", Syntax),
            ("a)", Syntax),
            ("a &&", Syntax),
            ("a | | b", Syntax),
            ("; a", Syntax),
            ("a ;; b", ControlStructure),
            ("a >", Syntax),
            ("a > ;", Syntax),
            ("a\\", Syntax),
            ("a\0b", Syntax),
            ("(a) b", Syntax),
            ("a; ( )", Syntax),
            ("{ }", Syntax),
            ("( ; )", Syntax),
            ("while true; do a; done", ControlStructure),
            ("case x in a) b;; esac", ControlStructure),
            ("[[ -f x ]] && a", ControlStructure),
            ("function f { a; }", ControlStructure),
            ("coproc a", ControlStructure),
            ("f() { a; }", FunctionDefinition),
            ("cat <<'X'\nhi\nX", Heredoc),
            ("cat <<-X\n\thi\n\tX\n", Heredoc),
            ("echo $((1+2))", Arithmetic),
            ("((x++))", Arithmetic),
            ("a=(1 2)", BashExtension),
            ("exec {fd}>f", BashExtension),
            ("a $'\\cA'", AnsiCEscape),
            ("a $'\\xff'", AnsiCEscape),
            ("a $'x\\é'", AnsiCEscape),
        ] {
            assert_eq!(unreadable(line), why, "{line:?}");
        }
        // Nesting is bounded.
        let deep = "$(".repeat(20) + &")".repeat(20);
        assert_eq!(unreadable(&format!("a {deep}")), TooDeep);
    }

    #[test]
    fn keywords_only_count_in_command_position_and_unquoted() {
        assert_eq!(words("echo if then fi"), w![["echo", "if", "then", "fi"]]);
        assert_eq!(words("\"if\" x"), w![["if", "x"]]);
        assert_eq!(words("A=1 if"), w![["if"]]);
    }

    #[test]
    fn tilde_prefixes_other_than_home_are_expansions() {
        for (line, dynamic) in [
            ("a ~", false),
            ("a ~/x", false),
            ("a x=~/y:~", false),
            ("a \"~\"x ~\"x\" \\~x a~x", false),
            ("a ~x", true),
            ("a ~-", true),
            ("a ~+/x", true),
            ("a ~0", true),
            ("a x=~root", true),
            ("a x=b:~-:c", true),
            ("x=~- a", true),
        ] {
            assert_eq!(parse(line).commands[0].dynamic, dynamic, "{line:?}");
        }
    }

    #[test]
    fn pipelines_are_numbered_as_read() {
        let p = parse("a | b |\n c; d | e && f $(g | h)");
        let numbers: Vec<(String, usize)> = p
            .commands
            .iter()
            .map(|c| (c.words[0].to_string(), c.pipeline))
            .collect();
        let of = |name: &str| numbers.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(of("a"), of("b"));
        assert_eq!(of("b"), of("c"));
        assert_ne!(of("c"), of("d"));
        assert_eq!(of("d"), of("e"));
        assert_ne!(of("e"), of("f"));
        assert_eq!(of("g"), of("h"));
        assert_ne!(of("g"), of("f"));
    }
}
