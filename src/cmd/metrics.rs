//! `--metrics`: ask a running daemon for its metrics and print them in the Prometheus text format, or write them
//! to a file atomically, as node_exporter's textfile collector wants (it must never read a half-written file).

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use super::flags::{ClientArgs, SocketArgs, UnknownServerUser};
use cavra_runtime_client::{Client, ClientError, find_socket};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    ServerUser(#[from] UnknownServerUser),
    #[error("cannot write the metrics to standard output: {0}")]
    WriteOutput(io::Error),
    #[error("cannot write the metrics to {}: {source}", path.display())]
    WriteFile { path: PathBuf, source: io::Error },
}

pub fn run(client: &ClientArgs, socket: &SocketArgs) -> Result<(), MetricsError> {
    let answer = Client::new(&find_socket(socket.socket.as_deref()).path)
        .with_timeout(client.client_timeout)
        .expect_server(client.server_check()?)
        .metrics()?;
    match &client.output {
        None => io::stdout()
            .lock()
            .write_all(answer.metrics.as_bytes())
            .map_err(MetricsError::WriteOutput),
        Some(path) => write_atomically(path, answer.metrics.as_bytes()).map_err(|source| MetricsError::WriteFile {
            path: path.clone(),
            source,
        }),
    }
}

/// Writes `bytes` to a new file beside `path` and renames it over `path`: a reader sees the old file or the new
/// one, never part of one. The new file is created, never opened if it exists (no link planted there is
/// followed), and readable by all, like the metrics it holds.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary_name);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temporary, path));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_whole_and_nothing_is_left_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cavra-runtime.prom");
        fs::write(&path, "old\n").unwrap();
        write_atomically(&path, b"new\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["cavra-runtime.prom"]);
        let error = write_atomically(&dir.path().join("missing/x.prom"), b"x").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
