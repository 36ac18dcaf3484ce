//! Disk headroom for the evidence log: the daemon reports itself degraded (health `status`, with the reason
//! `evidence.low_space`) while the log's file system has less free space than `--evidence-min-free`, before a full
//! disk fails decisions closed. The space is read with one `statvfs` at most every [`CHECK_INTERVAL`], never per
//! decision; a change either way is logged once.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::health::{Reason, Status};
use crate::evidence::{MinFree, Space};

/// How old the last look at the free space may be.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Headroom {
    /// The directory holding the evidence log.
    dir: PathBuf,
    min: MinFree,
    last: Mutex<Option<Checked>>,
}

#[derive(Debug)]
struct Checked {
    at: Instant,
    /// Why the daemon is degraded, if it is.
    problem: Option<Reason>,
}

impl Headroom {
    pub fn new(dir: PathBuf, min: MinFree) -> Self {
        Self {
            dir,
            min,
            last: Mutex::new(None),
        }
    }

    /// Why there is too little headroom, if there is: from the last look, or a new one once that is
    /// [`CHECK_INTERVAL`] old.
    pub fn problem(&self) -> Option<Reason> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(checked) = last.as_ref().filter(|checked| checked.at.elapsed() < CHECK_INTERVAL) {
            return checked.problem.clone();
        }
        let problem = self.look();
        let before = last.as_ref().map(|checked| checked.problem.is_some());
        match (&problem, before) {
            (Some(problem), None | Some(false)) => {
                tracing::warn!(
                    dir = %self.dir.display(),
                    code = problem.code,
                    "{}; the daemon reports itself degraded",
                    problem.message
                );
            }
            (None, Some(true)) => {
                tracing::info!(dir = %self.dir.display(), min_free = %self.min, "evidence log headroom is back");
            }
            _ => {}
        }
        *last = Some(Checked {
            at: Instant::now(),
            problem: problem.clone(),
        });
        problem
    }

    fn look(&self) -> Option<Reason> {
        let (code, message) = match Space::of(&self.dir) {
            Ok(space) if space.meets(self.min) => return None,
            Ok(space) => (
                "evidence.low_space",
                format!(
                    "the evidence log's file system ({}) has {} bytes free of {} ({:.1}%), below \
                     --evidence-min-free {}",
                    self.dir.display(),
                    space.available,
                    space.total,
                    space.percent_available(),
                    self.min
                ),
            ),
            Err(error) => (
                "evidence.space_unknown",
                format!("cannot read the free space of {}: {error}", self.dir.display()),
            ),
        };
        Some(Reason {
            code,
            status: Status::Degraded,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimum_above_what_is_free_is_a_problem_named_with_its_figures() {
        let dir = tempfile::tempdir().unwrap();
        let fine = Headroom::new(dir.path().to_owned(), MinFree::Bytes(0));
        assert_eq!(fine.problem(), None);
        let short = Headroom::new(dir.path().to_owned(), MinFree::Percent(100));
        let problem = short.problem().expect("no file system is completely free");
        assert_eq!((problem.code, problem.status), ("evidence.low_space", Status::Degraded));
        assert!(
            problem.message.starts_with("the evidence log's file system (")
                && problem.message.ends_with("below --evidence-min-free 100%"),
            "{problem:?}"
        );
        let gone = Headroom::new(dir.path().join("missing"), MinFree::Bytes(0));
        let unknown = gone.problem().expect("an unreadable file system is a problem too");
        assert_eq!(unknown.code, "evidence.space_unknown");
        assert!(
            unknown.message.starts_with("cannot read the free space of "),
            "{unknown:?}"
        );
    }

    #[test]
    fn the_space_is_read_again_only_after_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vanishes");
        std::fs::create_dir(&path).unwrap();
        let headroom = Headroom::new(path.clone(), MinFree::Bytes(0));
        assert_eq!(headroom.problem(), None);
        std::fs::remove_dir(&path).unwrap();
        assert_eq!(headroom.problem(), None, "the last look still counts");
        headroom.last.lock().unwrap().as_mut().unwrap().at -= CHECK_INTERVAL;
        assert!(headroom.problem().is_some(), "a new look finds the directory gone");
    }
}
