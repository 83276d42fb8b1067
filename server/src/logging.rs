//! Log set-up from etcd's flags: --logger, --log-outputs, --log-format and
//! --log-level, over tracing-subscriber's fmt (console) and etcd's zap JSON
//! lines ([`zap`]).

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::Config;

mod zap;

/// openraft's version, pinned with `=` in the workspace Cargo.toml (a unit
/// test checks the two agree), for the start-up banner.
pub const OPENRAFT_VERSION: &str = "0.9.25";

/// etcd's name for the log output that means stderr.
const DEFAULT_OUTPUT: &str = "default";

/// A log flag etcd would refuse, with etcd's wording where etcd has one.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("--logger=capnslog is removed in v3.5")]
    Capnslog,
    #[error("unknown logger option {0:?}")]
    UnknownLogger(String),
    #[error("unknown log format: {0}, supported values json, console")]
    UnknownFormat(String),
    #[error("multi logoutput for \"default\" is not supported yet")]
    DefaultNotAlone,
    #[error("--log-outputs is empty")]
    NoOutput,
    #[error("invalid --log-level {0:?}: {1}")]
    BadLevel(String, String),
    #[error("cannot open log output {0}: {1}")]
    Open(PathBuf, io::Error),
    #[error("installing the logger: {0}")]
    Init(String),
}

/// --log-format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Console,
    Json,
}

/// One --log-outputs target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stderr,
    Stdout,
    File(PathBuf),
}

/// The checked log flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    pub outputs: Vec<Output>,
    /// An EnvFilter directive.
    pub filter: String,
}

impl LogSettings {
    /// Checks the log flags of `cfg` as etcd checks them.
    pub fn from_config(cfg: &Config) -> Result<Self, LogError> {
        match cfg.logger.as_str() {
            "zap" => {}
            "capnslog" => return Err(LogError::Capnslog),
            other => return Err(LogError::UnknownLogger(other.to_string())),
        }
        let format = match cfg.log_format.as_str() {
            "json" => LogFormat::Json,
            "console" => LogFormat::Console,
            other => return Err(LogError::UnknownFormat(other.to_string())),
        };
        let names: Vec<&str> = cfg
            .log_outputs
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        if names.len() > 1 && names.contains(&DEFAULT_OUTPUT) {
            return Err(LogError::DefaultNotAlone);
        }
        let mut outputs: Vec<Output> = Vec::new();
        for name in names {
            let out = match name {
                // etcd's "default" is stderr (or journald under systemd,
                // which captures stderr anyway).
                DEFAULT_OUTPUT | "stderr" => Output::Stderr,
                "stdout" => Output::Stdout,
                path => Output::File(PathBuf::from(path)),
            };
            if !outputs.contains(&out) {
                outputs.push(out);
            }
        }
        if outputs.is_empty() {
            return Err(LogError::NoOutput);
        }
        Ok(LogSettings {
            format,
            outputs,
            filter: level_directive(&cfg.log_level)?,
        })
    }
}

/// etcd's level names in a tracing directive; openraft logs every election
/// at info, so it stays at warnings unless asked. A directive with targets
/// (`kvd=debug,...`) is taken as it is; a bare word must be a level, since
/// tracing would read it as a target name and silently log everything.
fn level_directive(level: &str) -> Result<String, LogError> {
    if level.contains('=') || level.contains(',') {
        return Ok(level.to_string());
    }
    let level = match level.to_ascii_lowercase().as_str() {
        l @ ("trace" | "debug" | "info" | "warn" | "error" | "off") => l.to_string(),
        // zap's levels above error: tracing has none, error is closest.
        "panic" | "fatal" | "dpanic" => "error".to_string(),
        _ => {
            return Err(LogError::BadLevel(
                level.to_string(),
                "only supports debug, info, warn, error, panic, or fatal".to_string(),
            ))
        }
    };
    Ok(format!("{level},openraft=warn"))
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides --log-level.
pub fn init(settings: &LogSettings) -> Result<(), LogError> {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => EnvFilter::try_new(&settings.filter)
            .map_err(|e| LogError::BadLevel(settings.filter.clone(), e.to_string()))?,
    };
    let writer = Outputs::open(&settings.outputs)?;
    let ansi = settings.format == LogFormat::Console && writer.all_terminals();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    let result = match settings.format {
        LogFormat::Console => builder.try_init(),
        // One flat object per line with zap's keys, as etcd writes them.
        LogFormat::Json => builder.event_format(zap::ZapJson).try_init(),
    };
    result.map_err(|e| LogError::Init(e.to_string()))
}

enum Sink {
    Stderr,
    Stdout,
    File(Mutex<File>),
}

/// Every --log-outputs target; each event is written to all of them.
#[derive(Clone)]
pub struct Outputs(Arc<Vec<Sink>>);

impl Outputs {
    fn open(outputs: &[Output]) -> Result<Self, LogError> {
        let mut sinks = Vec::with_capacity(outputs.len());
        for o in outputs {
            sinks.push(match o {
                Output::Stderr => Sink::Stderr,
                Output::Stdout => Sink::Stdout,
                Output::File(path) => {
                    let f = File::options()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| LogError::Open(path.clone(), e))?;
                    Sink::File(Mutex::new(f))
                }
            });
        }
        Ok(Outputs(Arc::new(sinks)))
    }

    /// Colours only when every target is a terminal (no escapes in files).
    fn all_terminals(&self) -> bool {
        self.0.iter().all(|s| match s {
            Sink::Stderr => io::stderr().is_terminal(),
            Sink::Stdout => io::stdout().is_terminal(),
            Sink::File(_) => false,
        })
    }
}

/// The writer for one event (tracing formats a whole line, then writes it).
pub struct EventWriter<'a>(&'a [Sink]);

impl Write for EventWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A failing target must not silence the others (nor kvd): errors
        // are dropped, there is nowhere left to report them.
        for sink in self.0 {
            let _ = match sink {
                Sink::Stderr => io::stderr().lock().write_all(buf),
                Sink::Stdout => io::stdout().lock().write_all(buf),
                Sink::File(f) => match f.lock() {
                    Ok(mut f) => f.write_all(buf),
                    Err(poisoned) => poisoned.into_inner().write_all(buf),
                },
            };
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        for sink in self.0 {
            let _ = match sink {
                Sink::Stderr => io::stderr().flush(),
                Sink::Stdout => io::stdout().flush(),
                Sink::File(f) => match f.lock() {
                    Ok(mut f) => f.flush(),
                    Err(poisoned) => poisoned.into_inner().flush(),
                },
            };
        }
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Outputs {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn settings(args: &[&str]) -> Result<LogSettings, LogError> {
        let mut all = vec!["kvd"];
        all.extend_from_slice(args);
        LogSettings::from_config(&Config::parse_from(all))
    }

    #[test]
    fn defaults_are_zap_console_on_stderr() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.format, LogFormat::Console);
        assert_eq!(s.outputs, vec![Output::Stderr]);
        assert_eq!(s.filter, "info,openraft=warn");
    }

    #[test]
    fn refuses_what_etcd_refuses_with_its_words() {
        let e = |a: &[&str]| settings(a).unwrap_err().to_string();
        assert_eq!(
            e(&["--logger=capnslog"]),
            "--logger=capnslog is removed in v3.5"
        );
        assert_eq!(e(&["--logger=foo"]), "unknown logger option \"foo\"");
        assert_eq!(
            e(&["--log-format=xml"]),
            "unknown log format: xml, supported values json, console"
        );
        assert_eq!(
            e(&["--log-outputs=default,stderr"]),
            "multi logoutput for \"default\" is not supported yet"
        );
    }

    #[test]
    fn outputs_list_files_and_streams() {
        let s = settings(&[
            "--log-outputs=stdout,/tmp/x.log,stderr,stdout",
            "--log-format=json",
        ])
        .unwrap();
        assert_eq!(s.format, LogFormat::Json);
        assert_eq!(
            s.outputs,
            vec![
                Output::Stdout,
                Output::File(PathBuf::from("/tmp/x.log")),
                Output::Stderr
            ]
        );
        assert_eq!(
            settings(&["--log-level=fatal"]).unwrap().filter,
            "error,openraft=warn"
        );
        assert_eq!(
            settings(&["--log-level=kvd=debug"]).unwrap().filter,
            "kvd=debug"
        );
        assert!(matches!(
            settings(&["--log-level=loud"]),
            Err(LogError::BadLevel(..))
        ));
    }

    #[test]
    fn file_output_gets_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvd.log");
        let out = Outputs::open(&[Output::File(path.clone())]).unwrap();
        out.make_writer().write_all(b"one\n").unwrap();
        out.make_writer().write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        let missing = dir.path().join("no/such/dir/kvd.log");
        assert!(matches!(
            Outputs::open(&[Output::File(missing)]),
            Err(LogError::Open(..))
        ));
    }

    #[test]
    fn banner_openraft_version_matches_the_pin() {
        let manifest = include_str!("../../Cargo.toml");
        let pin = format!("openraft = {{ version = \"={OPENRAFT_VERSION}\"");
        assert!(manifest.contains(&pin), "update OPENRAFT_VERSION: {pin}");
    }
}
