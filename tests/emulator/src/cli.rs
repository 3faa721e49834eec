//! Command-line flags, shared by the `credflow-emulator` binary and any CLI that embeds it
//! (`#[command(flatten)]` an [`EmulatorArgs`]).

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{
    ClientState, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DISABLED_CLIENT_ID, DISABLED_CLIENT_SECRET,
    EmulatorConfig, LIMITED_CLIENT_ID, LIMITED_CLIENT_SECRET, RateLimit, RateLimitScope,
};
use crate::server::{Emulator, EmulatorError, EmulatorHandle};

/// Flags of `credflow-emulator` (and `credflow emulator`).
#[derive(Clone, Debug, Default, PartialEq, clap::Args)]
pub struct EmulatorArgs {
    /// Port on 127.0.0.1 (0: pick a free one and print it).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Environment tokens are bound to (e.g. mypurecloud.ie).
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// Token life in seconds (fractions allowed: 2.5). Default 86400.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub token_lifetime: Option<Duration>,
    /// API requests allowed per client per window. Default 300.
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u64>,
    /// API rate-limit window in seconds. Default 60.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub rate_window: Option<Duration>,
    /// What the API rate limit counts per: one window per client id (default), or one per
    /// access token (each token its own budget; Genesys's scope is disputed).
    #[arg(long, value_enum, value_name = "SCOPE", default_value_t = RateLimitScope::Client)]
    pub rate_limit_scope: RateLimitScope,
    /// Token requests allowed per client per window. Default 30.
    #[arg(long, value_name = "N")]
    pub token_rate_limit: Option<u64>,
    /// Token-endpoint rate-limit window in seconds. Default 60.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub token_rate_window: Option<Duration>,
    /// API requests allowed per client per day (429 with a Retry-After of hours past it).
    #[arg(long, value_name = "N")]
    pub daily_limit: Option<u64>,
    /// Echo `scope` in token responses (requested ∩ permissions).
    #[arg(long)]
    pub echo_scope: bool,
    /// Do not print one line per request.
    #[arg(long)]
    pub quiet: bool,
    /// Serve HTTPS with a throwaway CA, made at start; its certificate (PEM) is written to a
    /// file in the temporary directory, whose path is printed, for clients to trust.
    #[arg(long)]
    pub tls: bool,
}

/// Parses seconds with an optional fraction ("2", "0.25").
///
/// # Errors
/// A message for clap when `s` is not a non-negative finite number.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s:?} is not a usable number of seconds"))
}

impl EmulatorArgs {
    /// The configuration these flags describe (defaults for everything not given).
    #[must_use]
    pub fn to_config(&self) -> EmulatorConfig {
        let mut config =
            EmulatorConfig::default().with_port(self.port).with_request_log(!self.quiet);
        if let Some(env) = &self.env {
            config.environment.clone_from(env);
        }
        if let Some(lifetime) = self.token_lifetime {
            config.default_token_lifetime = lifetime;
        }
        let api = RateLimit::GENESYS_API;
        config.api_rate_limit = RateLimit::new(
            self.rate_limit.unwrap_or(api.limit),
            self.rate_window.unwrap_or(api.window),
        );
        config.rate_limit_scope = self.rate_limit_scope;
        let token = RateLimit::TOKEN_ENDPOINT;
        config.token_rate_limit = RateLimit::new(
            self.token_rate_limit.unwrap_or(token.limit),
            self.token_rate_window.unwrap_or(token.window),
        );
        if let Some(daily) = self.daily_limit {
            config.daily_limit = Some(RateLimit::new(daily, Duration::from_secs(86_400)));
        }
        config.echo_scope = self.echo_scope;
        config.tls = self.tls;
        config
    }
}

/// The start-up banner: URLs and the demo credentials.
#[must_use]
pub fn banner(handle: &EmulatorHandle) -> String {
    let base = handle.base_url();
    format!(
        "credflow-emulator listening on {base} (environment {env})\n\
         \n  token URL   {token}\n  API base    {base}  (e.g. GET {base}/api/v2/routing/queues)\n  \
         counters    {base}/__emulator/counters   faults: POST {base}/__emulator/faults\n\
         \n  demo clients (id / secret):\n    {DEMO_CLIENT_ID} / {DEMO_CLIENT_SECRET}        \
         routing:queue:view, analytics:conversationDetail:view\n    \
         {LIMITED_CLIENT_ID} / {LIMITED_CLIENT_SECRET}  routing:queue:view only (403 on analytics)\n    \
         {DISABLED_CLIENT_ID} / {DISABLED_CLIENT_SECRET}  {state:?} (invalid_client)\n\
         \n  try: curl -u {DEMO_CLIENT_ID}:{DEMO_CLIENT_SECRET} -d grant_type=client_credentials {token}\n\
         \nCtrl-C to stop.",
        env = handle.environment(),
        token = handle.token_url(),
        state = ClientState::Disabled,
    )
}

/// Runs the emulator the flags describe until Ctrl-C, printing [`banner`] on standard output.
/// Call it from async code (the `credflow emulator` subcommand); the binary uses
/// [`Emulator::run_until_ctrl_c`] instead.
///
/// # Errors
/// As [`Emulator::start`].
pub async fn run_cli(args: EmulatorArgs) -> Result<(), EmulatorError> {
    Emulator::start(args.to_config()).await?.serve_until_ctrl_c(print_banner).await;
    Ok(())
}

/// Prints [`banner`] and flushes (so a parent process reading the address sees it at once).
/// With TLS, first writes the test CA's certificate ([`write_ca_pem`]) and prints where, or
/// why it could not.
pub fn print_banner(handle: &EmulatorHandle) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", banner(handle));
    match write_ca_pem(handle) {
        Ok(Some(path)) => {
            let _ = writeln!(
                out,
                "\n  TLS: trust the test CA in {} (e.g. credflow --ca-file {0}, curl --cacert {0})",
                path.display()
            );
        }
        Ok(None) => {}
        Err(e) => {
            let _ =
                writeln!(std::io::stderr().lock(), "credflow-emulator: cannot write the CA: {e}");
        }
    }
    let _ = out.flush();
}

/// Writes the test CA's certificate (PEM) of an emulator serving HTTPS to a new file
/// `credflow-emulator-ca-PORT-PID-NANOS.pem` in the temporary directory and returns its path;
/// `None` for plain HTTP. The file is created, never opened if something is there already (a
/// name another user of a shared temporary directory could have guessed and left a link or a
/// CA of their own at): a name that is taken is an error.
///
/// # Errors
/// The file cannot be created or written.
pub fn write_ca_pem(handle: &EmulatorHandle) -> std::io::Result<Option<PathBuf>> {
    use std::io::Write as _;
    let Some(pem) = handle.ca_pem() else { return Ok(None) };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name =
        format!("credflow-emulator-ca-{}-{}-{nanos}.pem", handle.addr().port(), std::process::id());
    let path = std::env::temp_dir().join(name);
    // `create_new`: O_EXCL, which does not follow a link at the path either.
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
    file.write_all(pem.as_bytes())?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    #[test]
    fn flags_map_to_config() {
        let cli = Cli::try_parse_from([
            "x",
            "--port",
            "0",
            "--env",
            "mypurecloud.ie",
            "--token-lifetime",
            "2.5",
            "--rate-limit",
            "10",
            "--rate-window",
            "1",
            "--daily-limit",
            "1000",
            "--quiet",
            "--tls",
        ]);
        let config = cli.map(|c| c.args.to_config()).ok();
        let config = config.as_ref();
        assert_eq!(config.map(|c| c.environment.as_str()), Some("mypurecloud.ie"));
        assert_eq!(config.map(|c| c.default_token_lifetime), Some(Duration::from_millis(2500)));
        assert_eq!(
            config.map(|c| c.api_rate_limit),
            Some(RateLimit::new(10, Duration::from_secs(1)))
        );
        assert_eq!(config.map(|c| c.token_rate_limit), Some(RateLimit::TOKEN_ENDPOINT));
        assert_eq!(config.and_then(|c| c.daily_limit).map(|d| d.limit), Some(1000));
        assert_eq!(config.map(|c| c.log_requests), Some(false));
        assert_eq!(config.map(|c| c.rate_limit_scope), Some(RateLimitScope::Client));
        assert_eq!(config.map(|c| c.tls), Some(true));
        assert!(Cli::try_parse_from(["x", "--token-lifetime", "-1"]).is_err());
        assert!(Cli::try_parse_from(["x", "--token-lifetime", "soon"]).is_err());
    }

    #[test]
    fn rate_limit_scope_flag() {
        let scope = |args: &[&str]| {
            Cli::try_parse_from(args).map(|c| c.args.to_config().rate_limit_scope).ok()
        };
        assert_eq!(scope(&["x", "--rate-limit-scope", "token"]), Some(RateLimitScope::Token));
        assert_eq!(scope(&["x", "--rate-limit-scope", "client"]), Some(RateLimitScope::Client));
        assert_eq!(scope(&["x"]), Some(RateLimitScope::Client));
        assert_eq!(scope(&["x", "--rate-limit-scope", "pod"]), None);
    }
}
