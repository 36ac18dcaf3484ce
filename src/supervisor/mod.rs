//! Glue to the service managers that run the daemon: readiness and watchdog notifications, and logging to the
//! journal or to standard error.

mod log_writer;
pub mod logging;
pub mod notify;
