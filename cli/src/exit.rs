//! etcdctl's exit codes and error reporting (`Error: <text>` on stderr).

use std::fmt;

/// Success.
pub const EXIT_SUCCESS: i32 = 0;
/// A request failed (server error, timeout).
pub const EXIT_ERROR: i32 = 1;
/// Could not connect to the cluster.
pub const EXIT_BAD_CONNECTION: i32 = 2;
/// A feature (e.g. an output format) is not supported by this command.
pub const EXIT_BAD_FEATURE: i32 = 4;
/// Bad input on stdin (e.g. a malformed `txn` line).
pub const EXIT_INVALID_INPUT: i32 = 3;
/// A long-running command was ended by the server (e.g. a canceled watch).
pub const EXIT_INTERRUPTED: i32 = 5;
/// Bad command line arguments.
pub const EXIT_BAD_ARGS: i32 = 128;

/// A failure that ends the program with an exit code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitError {
    /// The process exit code.
    pub code: i32,
    /// The text printed after `Error: `.
    pub message: String,
}

impl ExitError {
    /// A failure with `code` and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        ExitError {
            code,
            message: message.into(),
        }
    }

    /// A failure already reported on stderr: exit with `code`, print nothing.
    pub fn silent(code: i32) -> Self {
        Self::new(code, "")
    }

    /// Bad command line arguments (exit 128).
    pub fn bad_args(message: impl Into<String>) -> Self {
        Self::new(EXIT_BAD_ARGS, message)
    }

    /// An unsupported feature (exit 4).
    pub fn bad_feature(message: impl Into<String>) -> Self {
        Self::new(EXIT_BAD_FEATURE, message)
    }
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error: {}", self.message)
    }
}

impl From<kv_client::Error> for ExitError {
    fn from(e: kv_client::Error) -> Self {
        ExitError::new(EXIT_ERROR, error_text(&e))
    }
}

/// The text etcdctl shows for a client error: a server's answer is shown as
/// the server worded it (e.g. `etcdserver: member not found`), without our
/// client's prefix for its gRPC code.
pub fn error_text(e: &kv_client::Error) -> String {
    match e {
        kv_client::Error::Other { message, .. } => message.clone(),
        // What etcdctl (Go's context package) says when time runs out.
        kv_client::Error::Timeout => "context deadline exceeded".to_string(),
        // etcdctl's gRPC client keeps retrying an unreachable endpoint until
        // the command's deadline, so the user only ever sees the deadline.
        kv_client::Error::Unavailable { .. } => "context deadline exceeded".to_string(),
        // The server's text, without the compaction point the client adds.
        kv_client::Error::Compacted { .. } => {
            "etcdserver: mvcc: required revision has been compacted".to_string()
        }
        kv_client::Error::InvalidArgument(message) if message.starts_with("etcdserver: ") => {
            message.clone()
        }
        e => e.to_string(),
    }
}

/// Prints `Error: <text>` on stderr and exits with the error's code.
pub fn exit_with_error(e: &ExitError) -> ! {
    if !e.message.is_empty() {
        eprintln!("{e}");
    }
    std::process::exit(e.code)
}
