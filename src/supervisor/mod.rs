//! Glue to the service managers that run the daemon: readiness and watchdog notifications, and logging to the
//! journal, to standard error or to a log file that rotation may rename.

mod log_file;
mod log_writer;
pub mod logging;
pub mod notify;
