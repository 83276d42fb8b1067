//! etcd's JSON log lines (zap's production encoder as etcd configures it):
//! `level`, `ts`, `caller`, `msg`, then the event's fields in order with
//! etcd's hyphenated keys (a `data_dir` field is written `data-dir`), e.g.
//! `{"level":"info","ts":"2026-12-06T21:01:41.631257Z","caller":"etcdmain/etcd.go:122","msg":"...","data-dir":"..."}`.
//! Log shippers and dashboards built for etcd's lines read kvd's unchanged.

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The zap-style JSON event formatter (`--log-format=json`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ZapJson;

/// zap's level names; zap has no trace level, debug is the closest.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        _ => "debug",
    }
}

/// zap's short caller: the file's directory and name, then the line
/// (`node/background.rs:42`).
fn caller(file: Option<&str>, line: Option<u32>) -> Option<String> {
    let file = file?;
    let mut parts = file.rsplit(['/', '\\']);
    let name = parts.next().unwrap_or(file);
    let short = match parts.next() {
        Some(dir) if !dir.is_empty() => format!("{dir}/{name}"),
        _ => name.to_string(),
    };
    Some(match line {
        Some(l) => format!("{short}:{l}"),
        None => short,
    })
}

/// The event's message and its other fields, in the order they were given.
#[derive(Default)]
struct Fields {
    msg: String,
    rest: Vec<(String, Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::String(s)) => self.msg = s,
            ("message", v) => self.msg = v.to_string(),
            // Fields from the `log` crate's bridge describe the source,
            // which `caller` already gives.
            (name, _) if name.starts_with("log.") => {}
            // etcd's keys are hyphenated (`data-dir`, `expected-duration`);
            // tracing's field names are Rust identifiers.
            (name, v) => self.rest.push((name.replace('_', "-"), v)),
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

/// A JSON string literal for `s` (serde_json escapes as zap does for the
/// characters that matter: quotes, backslashes, control characters).
fn quoted(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

impl<S, N> FormatEvent<S, N> for ZapJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let mut fields = Fields::default();
        event.record(&mut fields);
        write!(
            writer,
            "{{\"level\":\"{}\",\"ts\":{}",
            level_name(meta.level()),
            quoted(&ts)
        )?;
        if let Some(c) = caller(meta.file(), meta.line()) {
            write!(writer, ",\"caller\":{}", quoted(&c))?;
        }
        write!(writer, ",\"msg\":{}", quoted(&fields.msg))?;
        for (name, value) in &fields.rest {
            write!(writer, ",{}:{}", quoted(name), value)?;
        }
        writeln!(writer, "}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_is_directory_file_and_line() {
        assert_eq!(
            caller(Some("server/src/node/background.rs"), Some(42)).as_deref(),
            Some("node/background.rs:42")
        );
        assert_eq!(
            caller(Some("main.rs"), Some(7)).as_deref(),
            Some("main.rs:7")
        );
        assert_eq!(caller(None, Some(7)), None);
    }

    #[test]
    fn levels_are_zaps_names() {
        assert_eq!(level_name(&Level::WARN), "warn");
        assert_eq!(level_name(&Level::TRACE), "debug");
    }
}
