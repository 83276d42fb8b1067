//! `ETCDCTL_*` environment variables for the global flags, as etcdctl
//! reads them: `--dial-timeout` from `ETCDCTL_DIAL_TIMEOUT`, and so on (the
//! flag's name upper-cased, `-` as `_`). A flag given on the command line
//! while its variable is also set is an error, as in etcdctl.
//!
//! Where etcdctl 3.4 reports through its internal logger (a timestamped
//! `C | pkg/flags: ...` line for the conflict, `W | ...` for an unknown
//! variable) or silently ignores a bad value, kvctl prints a plain
//! `Error: ...` (exit 1 for the conflict, 128 for a bad value) or
//! `Warning: ...` line instead.

use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

use crate::exit::{ExitError, EXIT_ERROR};

/// Variables etcdctl reads that are not global flags: the API version
/// (always 3 here) and `watch`'s key and range end.
const NOT_FLAGS: &[&str] = &[
    "ETCDCTL_API",
    "ETCDCTL_WATCH_KEY",
    "ETCDCTL_WATCH_RANGE_END",
];

/// The variable that sets the flag `--long`.
pub fn var_for(long: &str) -> String {
    format!("ETCDCTL_{}", long.to_uppercase().replace('-', "_"))
}

/// The global flags' values from the environment, as `--flag=value`
/// arguments to put right after the program name. `matches` is the parse
/// of the command line alone, to find flags given there as well.
/// `vars` is the environment (name, value).
pub fn flags_from_env(
    root: &Command,
    matches: &ArgMatches,
    vars: &[(String, String)],
) -> Result<Vec<OsString>, ExitError> {
    let mut out = Vec::new();
    for arg in root.get_arguments().filter(|a| a.is_global_set()) {
        let Some(long) = arg.get_long() else {
            continue;
        };
        let key = var_for(long);
        // An empty variable counts as unset, as in etcdctl.
        let Some((_, value)) = vars.iter().find(|(k, v)| *k == key && !v.is_empty()) else {
            continue;
        };
        if matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            return Err(ExitError::new(
                EXIT_ERROR,
                format!(
                    "conflicting environment variable {key:?} is shadowed by corresponding \
                     command-line flag (either unset environment variable or disable flag)"
                ),
            ));
        }
        if long.ends_with("-timeout") {
            crate::global::parse_duration(long, value)
                .map_err(|_| invalid(&key, value, "time: invalid duration"))?;
        }
        if arg.get_action().takes_values() {
            out.push(OsString::from(format!("--{long}={value}")));
        } else if parse_bool(value).ok_or_else(|| invalid(&key, value, "invalid syntax"))? {
            out.push(OsString::from(format!("--{long}")));
        }
    }
    Ok(out)
}

/// `ETCDCTL_*` variables that set nothing (etcdctl warns about them too).
pub fn unrecognized(root: &Command, vars: &[(String, String)]) -> Vec<String> {
    let known: Vec<String> = root
        .get_arguments()
        .filter(|a| a.is_global_set())
        .filter_map(|a| a.get_long().map(var_for))
        .collect();
    vars.iter()
        .filter(|(k, _)| k.starts_with("ETCDCTL_"))
        .filter(|(k, _)| !known.contains(k) && !NOT_FLAGS.contains(&k.as_str()))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The error for a variable whose value the flag does not take.
pub fn invalid(key: &str, value: &str, why: &str) -> ExitError {
    ExitError::bad_args(format!("invalid value {value:?} for {key}: {why}"))
}

/// Go's strconv.ParseBool, which etcdctl's boolean flags use.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bools() {
        assert_eq!(var_for("dial-timeout"), "ETCDCTL_DIAL_TIMEOUT");
        assert_eq!(var_for("write-out"), "ETCDCTL_WRITE_OUT");
        assert_eq!(parse_bool("T"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}
