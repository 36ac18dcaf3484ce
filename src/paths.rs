//! Where the socket lives when nobody says: one rule for the daemon, its clients and the lifecycle commands.

use std::env;
use std::path::PathBuf;

pub const SOCKET_ENV: &str = "CAVRA_RUNTIME_SOCKET";
const SYSTEM_SOCKET: &str = "/run/cavra/cavra-runtime.sock";

/// `$CAVRA_RUNTIME_SOCKET`, else `/run/cavra/cavra-runtime.sock` for root, else
/// `$XDG_RUNTIME_DIR/cavra/cavra-runtime.sock`, else `.cavra/cavra-runtime.sock`.
pub fn default_socket_path() -> PathBuf {
    let non_empty = |name: &str| env::var_os(name).filter(|value| !value.is_empty());
    if let Some(path) = non_empty(SOCKET_ENV) {
        return path.into();
    }
    if nix::unistd::geteuid().is_root() {
        return SYSTEM_SOCKET.into();
    }
    match non_empty("XDG_RUNTIME_DIR") {
        Some(runtime_dir) => PathBuf::from(runtime_dir).join("cavra/cavra-runtime.sock"),
        None => PathBuf::from(".cavra/cavra-runtime.sock"),
    }
}
