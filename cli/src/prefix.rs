//! Command-name prefixes as etcdctl (cobra, with prefix matching on) takes
//! them: `compact` runs `compaction`, `mem list` runs `member list`. An
//! unknown or ambiguous command name at the top level is refused with
//! cobra's "unknown command" error and its "Did you mean this?" list.

use std::ffi::OsString;

use clap::Command;

use crate::exit::{ExitError, EXIT_ERROR};

/// The order etcdctl registers its commands in, which is the order cobra
/// lists suggestions in; kvctl's own commands follow.
const ORDER: &[&str] = &[
    "get",
    "put",
    "del",
    "txn",
    "compaction",
    "alarm",
    "defrag",
    "endpoint",
    "move-leader",
    "watch",
    "version",
    "lease",
    "member",
    "snapshot",
    "make-mirror",
    "migrate",
    "lock",
    "elect",
    "auth",
    "user",
    "role",
    "check",
];

/// Rewrites every unique command-name prefix in `args` (program name
/// first) to the full name. Fails as cobra does on an unknown or ambiguous
/// top-level command.
pub fn expand(args: Vec<OsString>, root: &Command) -> Result<Vec<OsString>, ExitError> {
    let mut out = args;
    let mut cmd = root;
    let mut i = 1;
    while i < out.len() {
        let Some(arg) = out[i].to_str().map(str::to_string) else {
            return Ok(out);
        };
        if arg == "--" {
            return Ok(out);
        }
        if arg.starts_with('-') && arg.len() > 1 {
            if flag_takes_separate_value(&arg, cmd, root) {
                i += 1;
            }
            i += 1;
            continue;
        }
        let subs: Vec<&Command> = cmd.get_subcommands().collect();
        if subs.is_empty() {
            return Ok(out);
        }
        match find(&subs, &arg) {
            Some(found) => {
                out[i] = OsString::from(found.get_name());
                cmd = found;
            }
            // clap adds `help` only when it builds the command; cobra
            // takes a prefix of it too (`kvctl h`).
            None if !arg.is_empty() && "help".starts_with(&arg) => {
                out[i] = OsString::from("help");
                return Ok(out);
            }
            None if std::ptr::eq(cmd, root) => return Err(unknown(root, &arg)),
            // Below the top level cobra shows the parent's help; clap's
            // own error is clearer and is left to it.
            None => return Ok(out),
        }
        i += 1;
    }
    Ok(out)
}

/// An exact name or alias, else the only command the prefix starts.
fn find<'a>(subs: &[&'a Command], typed: &str) -> Option<&'a Command> {
    if let Some(exact) = subs
        .iter()
        .find(|c| c.get_name() == typed || c.get_all_aliases().any(|a| a == typed))
    {
        return Some(exact);
    }
    if typed.is_empty() {
        return None;
    }
    let matches: Vec<&&Command> = subs
        .iter()
        .filter(|c| {
            c.get_name().starts_with(typed) || c.get_all_aliases().any(|a| a.starts_with(typed))
        })
        .collect();
    match matches.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// Whether a flag such as `--endpoints` or `-w` takes its value from the
/// next argument (no `=` and no attached short value).
fn flag_takes_separate_value(arg: &str, cmd: &Command, root: &Command) -> bool {
    let lookup = |pred: &dyn Fn(&clap::Arg) -> bool| {
        cmd.get_arguments()
            .chain(root.get_arguments())
            .find(|a| pred(a))
            .map(|a| a.get_action().takes_values())
    };
    if let Some(long) = arg.strip_prefix("--") {
        if long.contains('=') {
            return false;
        }
        return lookup(&|a| a.get_long() == Some(long)).unwrap_or(false);
    }
    let short = &arg[1..];
    let mut chars = short.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => lookup(&|a| a.get_short() == Some(c)).unwrap_or(false),
        _ => false,
    }
}

/// cobra's error for a top-level name that names no single command.
fn unknown(root: &Command, typed: &str) -> ExitError {
    let name = root.get_name();
    let suggestions = suggestions(root, typed);
    let mut text = format!("unknown command \"{typed}\" for \"{name}\"");
    if !suggestions.is_empty() {
        text.push_str("\n\nDid you mean this?\n");
        for s in &suggestions {
            text.push('\t');
            text.push_str(s);
            text.push('\n');
        }
    }
    // cobra prints the error and a usage hint, then etcdctl prints the
    // error again: kept so that scripts matching etcdctl's stderr still do.
    let first = format!("Error: {text}\nRun '{name} --help' for usage.\n");
    eprint!("{first}");
    ExitError::new(EXIT_ERROR, text)
}

/// cobra's suggestions: a command within edit distance 2 (ignoring case)
/// of what was typed, or one it is a prefix of, in registration order.
fn suggestions(root: &Command, typed: &str) -> Vec<String> {
    let mut names: Vec<&str> = root
        .get_subcommands()
        .map(Command::get_name)
        .filter(|n| *n != "help")
        .collect();
    let rank = |n: &str| ORDER.iter().position(|o| *o == n).unwrap_or(ORDER.len());
    names.sort_by_key(|n| rank(n));
    let typed_lc = typed.to_lowercase();
    names
        .into_iter()
        .filter(|n| {
            let n_lc = n.to_lowercase();
            levenshtein(&typed_lc, &n_lc) <= 2 || n_lc.starts_with(&typed_lc)
        })
        .map(str::to_string)
        .collect()
}

/// Edit distance (insertions, deletions, substitutions) between two strings.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_unique_prefixes_and_help() {
        let root = Command::new("kvctl")
            .arg(clap::Arg::new("w").short('w').long("write-out"))
            .subcommand(Command::new("get"))
            .subcommand(Command::new("defrag"))
            .subcommand(Command::new("del"));
        let ex = |args: &[&str]| {
            expand(args.iter().map(OsString::from).collect(), &root).map(|v| {
                v.into_iter()
                    .map(|s| s.into_string().unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(ex(&["kvctl", "-w", "json", "ge", "a"]).unwrap()[3], "get");
        assert_eq!(ex(&["kvctl", "def"]).unwrap()[1], "defrag");
        assert_eq!(ex(&["kvctl", "h"]).unwrap()[1], "help");
        // `-w de`: the flag's value is not a command.
        assert_eq!(ex(&["kvctl", "-w", "de", "get"]).unwrap()[2], "de");
        assert_eq!(ex(&["kvctl", "de"]).unwrap_err().code, EXIT_ERROR);
        assert_eq!(ex(&["kvctl", "--", "de"]).unwrap()[2], "de");
    }

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("x", "txn"), 2);
        assert_eq!(levenshtein("e", "get"), 2);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }
}
