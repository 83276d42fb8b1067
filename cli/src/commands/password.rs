//! Reading a new user's password the way etcdctl does: interactively
//! (prompt on stdout, terminal echo turned off with `stty`, asked twice),
//! or with `--interactive=false` as one word from stdin (Go's
//! `fmt.Scanf("%s")`).
//!
//! The prompt is a terminal dialogue that happens before any request, so it
//! is written here rather than by a printer.

use std::io::{BufRead, Read, Write};
use std::process::Command;

use crate::exit::ExitError;

/// Longest password line read, so that endless stdin cannot fill memory
/// (etcd would refuse such a request anyway).
const MAX_PASSWORD: usize = 64 * 1024;

/// Asks for `name`'s password twice on the terminal, as etcdctl's
/// `readPasswordInteractive`.
pub fn ask_twice(name: &str) -> Result<String, ExitError> {
    let first = ask(&format!("Password of {name}: "))?;
    if first.is_empty() {
        return Err(ExitError::bad_args("empty password"));
    }
    let second = ask(&format!("Type password of {name} again for confirmation: "))?;
    if first != second {
        return Err(ExitError::bad_args("given passwords are different"));
    }
    Ok(first)
}

/// One prompt: the prompt, echo off, one line, echo on, a newline (the
/// order of etcdctl's password library, so the output is the same even
/// when stdin is not a terminal and `stty` complains on stderr).
pub fn ask(prompt: &str) -> Result<String, ExitError> {
    let failed = |e: std::io::Error| ExitError::bad_args(format!("failed to ask password: {e}"));
    let mut out = std::io::stdout();
    out.write_all(prompt.as_bytes()).map_err(failed)?;
    out.flush().map_err(failed)?;
    let got = stty("-echo")
        .map_err(|e| {
            ExitError::bad_args(format!(
                "failed to ask password: stty binary not found:\n\t{e}"
            ))
        })
        .and_then(|()| {
            let line = read_line();
            // Echo back on before reporting anything, even a failed read.
            let _ = stty("echo");
            line.map_err(|e| {
                ExitError::bad_args(format!(
                    "failed to ask password: failed during password entry: {e}"
                ))
            })
        });
    writeln!(out).map_err(failed)?;
    Ok(got?.trim().to_string())
}

/// Runs `stty ARG` on our terminal; its own complaints (stdin is not a
/// terminal) go to our stderr, and its exit status does not matter.
fn stty(arg: &str) -> std::io::Result<()> {
    Command::new("stty").arg(arg).status().map(|_| ())
}

/// One line of stdin without its `\n` (and a trailing `\r`).
fn read_line() -> std::io::Result<String> {
    let mut line = Vec::new();
    let stdin = std::io::stdin();
    let mut bytes = stdin.lock().bytes();
    while let Some(b) = bytes.next().transpose()? {
        if b == b'\n' || line.len() >= MAX_PASSWORD {
            break;
        }
        line.push(b);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// One whitespace-separated word from stdin, as Go's `fmt.Scanf("%s")`:
/// leading blanks are skipped; a newline or end of input before any word
/// gives the empty string.
pub fn scan_word() -> String {
    let stdin = std::io::stdin();
    scan_word_from(stdin.lock())
}

fn scan_word_from(r: impl BufRead) -> String {
    let mut word = Vec::new();
    for b in r.bytes() {
        let Ok(b) = b else { break };
        match b {
            b' ' | b'\t' | b'\r' if word.is_empty() => continue,
            b' ' | b'\t' | b'\r' | b'\n' => break,
            _ if word.len() >= MAX_PASSWORD => break,
            b => word.push(b),
        }
    }
    String::from_utf8_lossy(&word).into_owned()
}

/// Parses a boolean flag value as Go's `strconv.ParseBool` (etcdctl's flags
/// take `--flag`, `--flag=true` or `--flag=false`).
pub fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing \"{s}\": invalid syntax"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_word_like_go_scanf() {
        assert_eq!(scan_word_from(&b"pw1 extra\n"[..]), "pw1");
        assert_eq!(scan_word_from(&b"  pw\n"[..]), "pw");
        assert_eq!(scan_word_from(&b"\npw\n"[..]), "");
        assert_eq!(scan_word_from(&b""[..]), "");
        assert_eq!(scan_word_from(&b"last"[..]), "last");
    }

    #[test]
    fn bools_like_go() {
        assert_eq!(go_bool("false"), Ok(false));
        assert_eq!(go_bool("T"), Ok(true));
        assert!(go_bool("yes").is_err());
    }
}
