//! Who is on the other end of a connection, as the kernel reports it when the peer connected.

use std::io;

use tokio::net::UnixStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// Not every platform reports the peer's pid.
    pub pid: Option<i32>,
}

impl Peer {
    pub fn of(stream: &UnixStream) -> io::Result<Peer> {
        let credentials = stream.peer_cred()?;
        Ok(Peer {
            uid: credentials.uid(),
            gid: credentials.gid(),
            pid: credentials.pid(),
        })
    }
}
