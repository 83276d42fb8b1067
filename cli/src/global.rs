//! Global flags shared by every command and the client built from them.

use std::time::Duration;

use clap::Args;
use kv_client::{Client, ClientConfig};

use crate::exit::ExitError;

/// The output formats of `-w/--write-out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Human readable lines (the default).
    Simple,
    /// The response as JSON with protobuf field names.
    Json,
    /// `"Field" : value` lines.
    Fields,
    /// An ASCII table (only some commands).
    Table,
    /// The response's protobuf bytes (the RPC commands only).
    Protobuf,
}

/// Flags accepted before or after any command. Each can also be set with
/// `ETCDCTL_<FLAG>` (e.g. `ETCDCTL_DIAL_TIMEOUT=3s`); giving both is an
/// error (see `env.rs`).
#[derive(Debug, Clone, Args)]
pub struct GlobalFlags {
    /// gRPC endpoints (comma separated); env ETCDCTL_ENDPOINTS, then KVCTL_ENDPOINTS
    #[arg(long, global = true, env = "KVCTL_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Option<Vec<String>>,
    /// dial timeout for client connections
    #[arg(long, global = true, default_value = "2s")]
    pub dial_timeout: String,
    /// timeout for short running command (excluding dial timeout)
    #[arg(long, global = true, default_value = "5s")]
    pub command_timeout: String,
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        default_value = "simple"
    )]
    pub write_out: String,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true)]
    pub hex: bool,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, global = true)]
    pub password: Option<String>,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, global = true)]
    pub cacert: Option<String>,
    /// identify secure client using this TLS certificate file
    #[arg(long, global = true)]
    pub cert: Option<String>,
    /// identify secure client using this TLS key file
    #[arg(long, global = true)]
    pub key: Option<String>,
    /// skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)
    #[arg(long, global = true)]
    pub insecure_skip_tls_verify: bool,
}

impl GlobalFlags {
    /// The endpoints: the flag (or ETCDCTL_ENDPOINTS, or KVCTL_ENDPOINTS),
    /// else 127.0.0.1:2379.
    pub fn endpoint_list(&self) -> Vec<String> {
        match &self.endpoints {
            Some(e) if !e.is_empty() => e.clone(),
            _ => vec!["127.0.0.1:2379".to_string()],
        }
    }

    /// The parsed `-w` value.
    pub fn output_format(&self) -> Result<OutputFormat, ExitError> {
        match self.write_out.as_str() {
            "simple" => Ok(OutputFormat::Simple),
            "json" => Ok(OutputFormat::Json),
            "fields" => Ok(OutputFormat::Fields),
            "table" => Ok(OutputFormat::Table),
            "protobuf" => Ok(OutputFormat::Protobuf),
            _ => Err(ExitError::bad_feature("unsupported output format")),
        }
    }

    /// Builds the client from the flags.
    pub async fn client(&self) -> Result<Client, ExitError> {
        let dial = parse_duration("dial-timeout", &self.dial_timeout)?;
        let command = parse_duration("command-timeout", &self.command_timeout)?;
        let mut config = ClientConfig::new(self.endpoint_list())
            .with_connect_timeout(dial)
            .with_request_timeout(command);
        if let Some((name, password)) = self.credentials()? {
            config = config.with_user(name, password);
        }
        if let Some(tls) = self.tls()? {
            config = config.with_tls_config(tls);
        }
        Client::connect(config)
            .await
            .map_err(|e| ExitError::new(crate::exit::EXIT_BAD_CONNECTION, e.to_string()))
    }
}

impl GlobalFlags {
    /// A client for one endpoint only (commands that address each member
    /// in turn), with every other flag as given.
    pub async fn client_for(&self, endpoint: &str) -> Result<Client, ExitError> {
        let mut one = self.clone();
        one.endpoints = Some(vec![endpoint.to_string()]);
        one.client().await
    }

    /// `--user name:password`, or `--user name --password pw` (then the
    /// whole `--user` is the name, as in etcdctl).
    fn credentials(&self) -> Result<Option<(String, String)>, ExitError> {
        let Some(user) = &self.user else {
            return Ok(None);
        };
        let (name, password) = match (self.password.as_deref(), user.split_once(':')) {
            (Some(password), _) if !password.is_empty() => (user.clone(), password.to_string()),
            (_, Some((name, password))) => (name.to_string(), password.to_string()),
            // As etcdctl: ask on the terminal.
            (_, None) => {
                let password = crate::commands::password::ask("Password: ")
                    .map_err(|e| ExitError::new(crate::exit::EXIT_ERROR, e.message))?;
                (user.clone(), password)
            }
        };
        // etcd's client authenticates only with both a name and a password
        // (`--user name:` sends requests without a token).
        if name.is_empty() || password.is_empty() {
            return Ok(None);
        }
        Ok(Some((name, password)))
    }

    /// TLS settings when any of `--cacert`, `--cert`, `--key` or
    /// `--insecure-skip-tls-verify` is given.
    fn tls(&self) -> Result<Option<kv_client::tls::TlsConfig>, ExitError> {
        if self.cacert.is_none()
            && self.cert.is_none()
            && self.key.is_none()
            && !self.insecure_skip_tls_verify
        {
            return Ok(None);
        }
        let read = |path: &str| {
            std::fs::read(path).map_err(|e| ExitError::bad_args(format!("open {path}: {e}")))
        };
        let mut tls = kv_client::tls::TlsConfig::new()
            .with_insecure_skip_verify(self.insecure_skip_tls_verify);
        if let Some(ca) = &self.cacert {
            tls = tls.with_ca_pem(read(ca)?);
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => tls = tls.with_identity_pem(read(cert)?, read(key)?),
            (None, None) => {}
            _ => {
                return Err(ExitError::bad_args(
                    "--cert and --key must be given together",
                ));
            }
        }
        Ok(Some(tls))
    }
}

/// Parses a Go-style duration such as `2s`, `500ms`, `1m30s` or `1.5s`.
pub fn parse_duration(flag: &str, s: &str) -> Result<Duration, ExitError> {
    let bad = || {
        ExitError::bad_args(format!(
            "invalid argument \"{s}\" for \"--{flag}\" flag: time: invalid duration \"{s}\""
        ))
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("x", "2s").unwrap(), Duration::from_secs(2));
        assert_eq!(
            parse_duration("x", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration("x", "1m30s").unwrap(),
            Duration::from_secs(90)
        );
        assert!(parse_duration("x", "abc").is_err());
        assert!(parse_duration("x", "").is_err());
    }
}
