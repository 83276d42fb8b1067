//! `txn [-i]`: reads compares, success ops and failure ops from stdin (each
//! list ended by an empty line) in etcdctl's syntax, and commits them as one
//! transaction.
//!
//! ```text
//! mod("key1") > "0"
//! value("key2") = "v"
//!
//! put key1 "overwrote-key1"
//!
//! get key1
//! ```

use std::io::BufRead;

use clap::{Args, Parser, Subcommand};
use kv_client::{Client, Compare, CompareOp, Txn, TxnOp};

use super::{del::DelArgs, get::GetArgs, put::PutArgs, Output};
use crate::exit::{ExitError, EXIT_INVALID_INPUT};

/// Txn processes all the requests in one transaction
#[derive(Debug, Clone, Args)]
pub struct TxnArgs {
    /// Input transaction in interactive mode
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// (none accepted)
    pub args: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> ExitError {
    ExitError::new(EXIT_INVALID_INPUT, msg)
}

/// Reads one line; a missing final newline is an error, as with Go's
/// `ReadString('\n')`.
fn read_line(r: &mut dyn BufRead) -> Result<String, ExitError> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| invalid(e.to_string()))?;
    if !line.ends_with('\n') {
        return Err(invalid("EOF"));
    }
    Ok(line.trim().to_string())
}

/// Reads the lines of one section, up to an empty line.
fn read_section(r: &mut dyn BufRead) -> Result<Vec<String>, ExitError> {
    let mut lines = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
    }
}

/// Reads and runs the transaction. `sink` gets the interactive prompts and
/// then the answer.
pub async fn run(
    client: &Client,
    args: &TxnArgs,
    input: &mut dyn BufRead,
    sink: super::Sink<'_>,
) -> Result<(), ExitError> {
    if !args.args.is_empty() {
        return Err(ExitError::bad_args("txn command does not accept argument"));
    }
    let mut prompt = |p: &'static str| {
        if args.interactive {
            sink(Output::Prompt(p))
        } else {
            Ok(())
        }
    };
    prompt("compares:")?;
    let cmps = read_section(input)?
        .iter()
        .map(|l| parse_compare(l))
        .collect::<Result<Vec<_>, _>>()?;
    prompt("success requests (get, put, del):")?;
    let then = read_ops(input)?;
    prompt("failure requests (get, put, del):")?;
    let els = read_ops(input)?;
    let txn = Txn::new().when(cmps).and_then(then).or_else(els);
    let resp = client.txn(txn).await?;
    sink(Output::Txn(resp))
}

fn read_ops(r: &mut dyn BufRead) -> Result<Vec<TxnOp>, ExitError> {
    let mut ops = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            return Ok(ops);
        }
        ops.push(parse_op(&line)?);
    }
}

/// One request line, parsed with the same flags as the commands.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
struct OpLine {
    #[command(subcommand)]
    op: OpCommand,
}

#[derive(Debug, Subcommand)]
enum OpCommand {
    Put(PutArgs),
    Get(GetArgs),
    Del(DelArgs),
}

/// Parses `put|get|del ARGS...` (etcdctl's argument quoting).
pub fn parse_op(line: &str) -> Result<TxnOp, ExitError> {
    let args = argify(line)?;
    if args.len() < 2 {
        return Err(invalid(format!("invalid txn compare request: {line}")));
    }
    let parsed = OpLine::try_parse_from(&args)
        .map_err(|_| invalid(format!("invalid txn request: {line}")))?;
    Ok(match parsed.op {
        OpCommand::Put(a) => {
            let r = a.validate()?;
            let opts = r.options();
            TxnOp::put(r.key, r.value, opts)
        }
        OpCommand::Get(a) => {
            let (k, o) = a.validate()?;
            TxnOp::get(k, o)
        }
        OpCommand::Del(a) => {
            let (k, o) = a.validate()?;
            TxnOp::delete(k, o)
        }
    })
}

/// Splits a line into arguments: double-quoted strings (Go escapes),
/// single-quoted strings, or runs of non-space characters.
pub fn argify(line: &str) -> Result<Vec<String>, ExitError> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            c if c.is_whitespace() => i += 1,
            '"' => {
                let (s, used) = unquote(&chars[i..]).ok_or_else(|| invalid("unexpected EOF"))?;
                out.push(s);
                i += used;
            }
            '\'' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .map_or(chars.len(), |p| i + 1 + p);
                out.push(chars[i + 1..end].iter().collect());
                i = (end + 1).min(chars.len());
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                out.push(chars[start..i].iter().collect());
            }
        }
    }
    Ok(out)
}

/// Reads a Go double-quoted (or back-quoted) string at the start of `s`;
/// returns it and the number of chars used.
fn unquote(s: &[char]) -> Option<(String, usize)> {
    let quote = *s.first()?;
    if quote == '`' {
        let end = s[1..].iter().position(|&c| c == '`')? + 1;
        return Some((s[1..end].iter().collect(), end + 1));
    }
    if quote != '"' {
        return None;
    }
    let mut out = String::new();
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            '"' => return Some((out, i + 1)),
            '\\' => {
                let c = *s.get(i + 1)?;
                i += 2;
                match c {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' | '"' | '\'' => out.push(c),
                    'x' | 'u' => {
                        let n = if c == 'x' { 2 } else { 4 };
                        let hex: String = s.get(i..i + n)?.iter().collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                        i += n;
                    }
                    _ => return None,
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    None
}

/// Parses `target("key") op "value"` as etcdctl 3.4 does (`fmt.Sscanf` with
/// `%q) %s %q`), with its error texts.
pub fn parse_compare(line: &str) -> Result<Compare, ExitError> {
    let Some((target, rest)) = line.split_once('(') else {
        return Err(invalid(format!("malformed comparison: {line}")));
    };
    let chars: Vec<char> = rest.chars().collect();
    let (mut key, mut op, mut val) = (String::new(), String::new(), String::new());
    let mut n = 0;
    let mut i = skip_spaces(&chars, 0);
    if let Some((k, used)) = unquote(&chars[i..]) {
        key = k;
        n += 1;
        i += used;
        if chars.get(i) == Some(&')') {
            i = skip_spaces(&chars, i + 1);
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
            if i > start {
                op = chars[start..i].iter().collect();
                n += 1;
                i = skip_spaces(&chars, i);
                if let Some((v, _)) = unquote(&chars[i..]) {
                    val = v;
                    n += 1;
                }
            }
        }
    }
    if n != 3 {
        let q = |s: &str| crate::printer::fields::go_quote(s.as_bytes());
        return Err(invalid(format!(
            "malformed comparison: {line}; got {target}({}) {op} {}",
            q(&key),
            q(&val)
        )));
    }
    let bad = || invalid(format!("invalid txn compare request: {line}"));
    let op = match op.as_str() {
        "=" => CompareOp::Equal,
        "!=" => CompareOp::NotEqual,
        "<" => CompareOp::Less,
        ">" => CompareOp::Greater,
        _ => return Err(bad()),
    };
    let int = |radix| i64::from_str_radix(&val, radix).map_err(|_| bad());
    Ok(match target {
        "ver" | "version" => Compare::version(key, op, int(10)?),
        "c" | "create" => Compare::create_revision(key, op, int(10)?),
        "m" | "mod" => Compare::mod_revision(key, op, int(10)?),
        "val" | "value" => Compare::value(key, op, val),
        "lease" => Compare::lease(key, op, int(16)?),
        _ => {
            return Err(invalid(format!(
                "malformed comparison: {line} (unknown target {target})"
            )))
        }
    })
}

fn skip_spaces(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i] == ' ' {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argify_quotes() {
        assert_eq!(
            argify(r#"put "a b" 'c d' e\"f "x\ny""#).unwrap(),
            vec!["put", "a b", "c d", "e\\\"f", "x\ny"]
        );
    }

    #[test]
    fn compare_errors_like_etcdctl() {
        assert_eq!(
            parse_compare("bad").unwrap_err().message,
            "malformed comparison: bad"
        );
        assert_eq!(
            parse_compare(r#"value("a") = 1"#).unwrap_err().message,
            r#"malformed comparison: value("a") = 1; got value("a") = """#
        );
        assert_eq!(
            parse_compare(r#"value("a" = "1""#).unwrap_err().message,
            r#"malformed comparison: value("a" = "1"; got value("a")  """#
        );
        let e = parse_compare(r#"mod("a") > "x""#).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (3, r#"invalid txn compare request: mod("a") > "x""#)
        );
        assert!(parse_compare(r#"mod("a") > "5""#).is_ok());
        assert!(parse_compare(r#"lease("a") = "1f""#).is_ok());
    }

    #[test]
    fn ops_parse_with_command_flags() {
        assert!(parse_op("get a --prefix --limit=1").is_ok());
        assert_eq!(
            parse_op("bogus x").unwrap_err().message,
            "invalid txn request: bogus x"
        );
        assert_eq!(parse_op("put x").unwrap_err().code, 128);
        assert_eq!(
            parse_op("get").unwrap_err().message,
            "invalid txn compare request: get"
        );
    }
}
