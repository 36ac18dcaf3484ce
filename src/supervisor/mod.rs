//! Glue to the service managers that run the daemon: readiness and watchdog notifications, and logging to the
//! journal, to standard error or to a log file that rotation may rename, with rate limits for warnings a flood
//! repeats.

mod log_file;
mod log_writer;
pub mod logging;
pub mod notify;
pub mod rate_limit;
