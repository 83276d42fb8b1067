//! etcdctl's exit codes and error reporting (`Error: <text>` on stderr).

use std::fmt;

/// Success.
pub const EXIT_SUCCESS: i32 = 0;
/// A request failed (server error, timeout).
pub const EXIT_ERROR: i32 = 1;
/// Could not connect to the cluster.
#[allow(dead_code)]
pub const EXIT_BAD_CONNECTION: i32 = 2;
/// A feature (e.g. an output format) is not supported by this command.
pub const EXIT_BAD_FEATURE: i32 = 4;
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
        ExitError::new(EXIT_ERROR, e.to_string())
    }
}

/// Prints `Error: <text>` on stderr and exits with the error's code.
pub fn exit_with_error(e: &ExitError) -> ! {
    eprintln!("{e}");
    std::process::exit(e.code)
}
