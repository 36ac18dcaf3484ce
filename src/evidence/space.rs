//! Free space on the evidence log's file system, and the least the operator wants there (`--evidence-min-free`).
//! A full disk fails every decision closed (`daemon.evidence.unavailable`); the daemon reports itself degraded
//! while the space left is below the minimum, so monitoring hears of it before that.

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

/// The least free space wanted: bytes, or a percentage of the file system's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinFree {
    Bytes(u64),
    Percent(u8),
}

impl FromStr for MinFree {
    type Err = String;

    /// `10%`, `1073741824`, or a number with a binary suffix: `512M`, `2G`, `1T` (also `K`); `0` turns the check off.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{text:?} is not a percentage (10%) or a size in bytes (1073741824, 512M, 2G)");
        if let Some(percent) = text.strip_suffix('%') {
            return percent
                .parse::<u8>()
                .ok()
                .filter(|percent| *percent <= 100)
                .map(MinFree::Percent)
                .ok_or_else(invalid);
        }
        let (digits, unit) = match text.char_indices().last() {
            Some((at, suffix)) if suffix.is_ascii_alphabetic() => (&text[..at], suffix.to_ascii_uppercase()),
            _ => (text, 'B'),
        };
        let shift = match unit {
            'B' => 0,
            'K' => 10,
            'M' => 20,
            'G' => 30,
            'T' => 40,
            _ => return Err(invalid()),
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|number| number.checked_mul(1 << shift))
            .map(MinFree::Bytes)
            .ok_or_else(invalid)
    }
}

impl fmt::Display for MinFree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MinFree::Bytes(bytes) => write!(f, "{bytes} bytes"),
            MinFree::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

/// What a file system has: bytes an unprivileged writer (the daemon's user) may still use, of its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub available: u64,
    pub total: u64,
}

impl Space {
    /// The free space of the file system holding `path`.
    pub fn of(path: &Path) -> io::Result<Space> {
        let stats = nix::sys::statvfs::statvfs(path)?;
        let block = stats.fragment_size() as u64;
        Ok(Space {
            available: (stats.blocks_available() as u64).saturating_mul(block),
            total: (stats.blocks() as u64).saturating_mul(block),
        })
    }

    /// Whether this space is at least `min`.
    pub fn meets(&self, min: MinFree) -> bool {
        match min {
            MinFree::Bytes(bytes) => self.available >= bytes,
            MinFree::Percent(percent) => {
                u128::from(self.available) * 100 >= u128::from(self.total) * u128::from(percent)
            }
        }
    }

    /// The available share of the total, in percent.
    pub fn percent_available(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.available as f64 * 100.0 / self.total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimums_parse_as_percentages_or_sizes() {
        assert_eq!("10%".parse(), Ok(MinFree::Percent(10)));
        assert_eq!("0".parse(), Ok(MinFree::Bytes(0)));
        assert_eq!("4096".parse(), Ok(MinFree::Bytes(4096)));
        assert_eq!("512M".parse(), Ok(MinFree::Bytes(512 << 20)));
        assert_eq!("2g".parse(), Ok(MinFree::Bytes(2 << 30)));
        for bad in ["101%", "-1", "ten", "5X", "", "%", "99999999999999T"] {
            let error = bad.parse::<MinFree>().unwrap_err();
            assert!(error.contains("is not a percentage"), "{bad}: {error}");
        }
    }

    #[test]
    fn space_meets_a_minimum_in_bytes_or_percent() {
        let space = Space {
            available: 100,
            total: 1000,
        };
        assert!(space.meets(MinFree::Percent(10)));
        assert!(!space.meets(MinFree::Percent(11)));
        assert!(space.meets(MinFree::Bytes(100)));
        assert!(!space.meets(MinFree::Bytes(101)));
        assert!((space.percent_available() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_real_file_system_reports_its_space() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::of(dir.path()).unwrap();
        assert!(space.total > 0 && space.available <= space.total, "{space:?}");
        assert!(space.meets(MinFree::Bytes(0)) && space.meets(MinFree::Percent(0)));
        let error = Space::of(&dir.path().join("missing")).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
