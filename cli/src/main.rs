//! `credflow`: OAuth 2.0 client-credentials tokens, authenticated API calls, setup diagnosis and
//! an offline demo, for Genesys Cloud and any OAuth2 server.
//!
//! Exit codes: 0 success; 1 the API answered an error status, returned as is; 2 usage or
//! configuration error, or a token URL that answers with something else than a usable token;
//! 3 credentials rejected; 4 scope or permission problem; 5 unavailable (retries exhausted,
//! breaker open, rate-limited beyond the longest accepted wait, no token in time).
//!
//! Nothing it prints of what a server sent (errors, `-v` headers, error bodies, logs) shows the
//! client's secret, Basic credentials, assertion or token: echoes are masked.

mod check;
mod demo;
mod progress;

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use credflow_core::env::parse_environment;
use credflow_emulator::EmulatorArgs;
use credflow_reqwest::config::{
    ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_CLIENT_SECRET_FILE, credentials, read_secret_file,
};
use credflow_reqwest::{AuthMethod, Client, Config, Error};

/// Keeps machine-to-machine OAuth 2.0 access working: tokens, API calls, diagnosis.
#[derive(Debug, Parser)]
#[command(name = "credflow", version, about, long_about = None)]
#[command(after_help = "The client secret is read from GENESYS_CLIENT_SECRET or \
--client-secret-file, never from a flag value.\n\nExit codes: 0 ok, 1 the API answered an \
error status (body printed), 2 configuration (or a token URL that does not answer with a usable \
token), 3 credentials rejected, 4 scope or permission, 5 unavailable.")]
struct Cli {
    #[command(flatten)]
    target: TargetArgs,
    /// More detail on stderr: -v headers and timeline, -vv debug logs.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// Where to get tokens and send requests, and as whom.
#[derive(Clone, Debug, Default, Args)]
struct TargetArgs {
    /// Genesys Cloud environment: mypurecloud.ie, eu-west-1, api.mypurecloud.ie, …
    #[arg(long, global = true, env = "GENESYS_ENV_NAME", value_name = "NAME")]
    env: Option<String>,
    /// Token endpoint of any OAuth2 server (with --api-base).
    #[arg(long, global = true, env = "CREDFLOW_TOKEN_URL", value_name = "URL")]
    token_url: Option<String>,
    /// API base URL that goes with --token-url.
    #[arg(long, global = true, env = "CREDFLOW_API_BASE", value_name = "URL")]
    api_base: Option<String>,
    /// OAuth client id [env: GENESYS_CLIENT_ID].
    #[arg(long, global = true, value_name = "ID")]
    client_id: Option<String>,
    /// File holding the client secret [env: GENESYS_CLIENT_SECRET_FILE].
    #[arg(long, global = true, value_name = "PATH")]
    client_secret_file: Option<String>,
    /// Client authentication: basic, post or jwt.
    #[arg(long, global = true, default_value = "basic", value_name = "METHOD")]
    auth_method: String,
    /// Scope to request, space-separated (Genesys ignores it for client credentials).
    #[arg(long, global = true)]
    scope: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print an access token (for TOKEN=$(credflow token)).
    Token {
        /// Print type, expiry, scope and credential fingerprint as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Call the API with auth, pacing and retries: body to stdout, diagnostics to stderr.
    Request {
        /// HTTP method (default GET), or the path when the method is left out.
        method_or_path: String,
        /// The path, under the API base (e.g. /api/v2/routing/queues).
        path: Option<String>,
        /// Request body: @FILE, - for standard input, or the text itself.
        #[arg(long, short = 'd')]
        data: Option<String>,
    },
    /// Shorthand for `request GET PATH`.
    Get {
        /// The path, under the API base.
        path: String,
    },
    /// Diagnose a setup: environment, token, verification, permissions.
    Check {
        /// Also call this path ("PATH" for GET, or "POST PATH") and explain a 403 (repeatable).
        #[arg(long = "probe", value_name = "[METHOD] PATH")]
        probes: Vec<String>,
    },
    /// Narrate a scenario against the built-in emulator: no credentials, no network.
    Demo {
        /// Print every request the emulator sees.
        #[arg(long)]
        show_requests: bool,
    },
    /// Run the Genesys Cloud emulator on 127.0.0.1.
    Emulator(EmulatorArgs),
}

/// A failure with its exit code, printed on stderr.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure { code: 2, message: message.into() }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let mut message = format!("{e}");
        if let Some(status) = e.status() {
            message.push_str(&format!("\n  status:         HTTP {status}"));
        }
        if let Some(code) = e.code() {
            message.push_str(&format!("\n  code:           {code}"));
        }
        if let Some(id) = e.correlation_id() {
            message.push_str(&format!("\n  correlation id: {id}"));
        }
        if let Some(cause) = e.likely_cause() {
            message.push_str(&format!("\n  likely cause:   {cause}"));
        }
        Failure { code: u8::try_from(e.exit_code()).unwrap_or(1), message }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("credflow: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("credflow: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "off",
        1 => "credflow_reqwest=info",
        _ => "credflow_reqwest=debug,credflow_emulator=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CREDFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Emulator(args) => credflow_emulator::run_cli(args)
            .await
            .map_err(|e| Failure { code: 1, message: format!("emulator: {e}") }),
        Command::Demo { show_requests } => demo::run(show_requests).await,
        Command::Token { json } => {
            let client = build_client(&cli.target)?;
            let token = client.token().await?;
            if json {
                print_token_json(&client, &token);
            } else {
                println!("{}", token.as_str());
            }
            Ok(())
        }
        Command::Get { path } => {
            let client = build_client(&cli.target)?;
            request(&client, "GET", &path, None, cli.verbose).await
        }
        Command::Request { method_or_path, path, data } => {
            let (method, path) = match path {
                Some(path) => (method_or_path.to_ascii_uppercase(), path),
                None => ("GET".to_owned(), method_or_path),
            };
            let client = build_client(&cli.target)?;
            let body = data.map(|d| read_data(&d)).transpose()?;
            request(&client, &method, &path, body, cli.verbose).await
        }
        Command::Check { probes } => check::run(&cli.target, &probes).await,
    }
}

/// Builds the client from flags and environment; every problem names the flag or variable.
fn build_client(target: &TargetArgs) -> Result<Client, Failure> {
    Client::new(build_config(target)?).map_err(Failure::from)
}

fn build_config(target: &TargetArgs) -> Result<Config, Failure> {
    let id = target
        .client_id
        .clone()
        .or_else(|| std::env::var(ENV_CLIENT_ID).ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Failure::usage(format!("no client id: set {ENV_CLIENT_ID} or pass --client-id"))
        })?;
    let secret = match (&target.client_secret_file, std::env::var(ENV_CLIENT_SECRET).ok()) {
        (Some(path), _) => read_secret_file(path, "--client-secret-file")?,
        (None, Some(secret)) => secret,
        (None, None) => match std::env::var(ENV_CLIENT_SECRET_FILE).ok() {
            Some(path) => read_secret_file(&path, ENV_CLIENT_SECRET_FILE)?,
            None => {
                return Err(Failure::usage(format!(
                    "no client secret: set {ENV_CLIENT_SECRET} or pass --client-secret-file PATH \
                     (never a flag value: it would show in process lists and shell history)"
                )));
            }
        },
    };
    let credentials = credentials(&id, &secret)?;
    let mut config = match (&target.token_url, &target.api_base) {
        (Some(token_url), Some(api_base)) => Config::custom(token_url, api_base, credentials),
        (Some(_), None) | (None, Some(_)) => {
            return Err(Failure::usage("--token-url and --api-base go together"));
        }
        (None, None) => {
            let name = target.env.clone().unwrap_or_else(|| "mypurecloud.com".to_owned());
            let env = parse_environment(&name)
                .map_err(|e| Failure::usage(format!("environment {name:?}: {e}")))?;
            Config::genesys(env, credentials)
        }
    };
    config.auth_method = AuthMethod::parse(&target.auth_method).ok_or_else(|| {
        Failure::usage(format!("--auth-method {:?}: use basic, post or jwt", target.auth_method))
    })?;
    config.scope.clone_from(&target.scope);
    config.token_wait = Duration::from_secs(20);
    Ok(config)
}

fn read_data(data: &str) -> Result<Vec<u8>, Failure> {
    if data == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Failure::usage(format!("--data -: cannot read standard input: {e}")))?;
        Ok(buf)
    } else if let Some(path) = data.strip_prefix('@') {
        std::fs::read(path).map_err(|e| Failure::usage(format!("--data @{path}: {e}")))
    } else {
        Ok(data.as_bytes().to_vec())
    }
}

async fn request(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    verbose: u8,
) -> Result<(), Failure> {
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| Failure::usage(format!("{method:?} is not an HTTP method")))?;
    let mut builder = client.request(method.clone(), path)?;
    if let Some(body) = body {
        builder = builder.header("Content-Type", "application/json").body(body);
    }
    let request = builder.build().map_err(|e| Failure::usage(format!("request: {e}")))?;
    let progress = progress::spawn(client, verbose > 0);
    let started = std::time::Instant::now();
    let result = client.send(request).await;
    progress.abort();
    let response = result?;
    if verbose > 0 {
        eprintln!(
            "< {:?} {} ({} ms)",
            response.version(),
            response.status(),
            started.elapsed().as_millis()
        );
        // A server may echo the client's credentials in any header (a correlation id, a
        // challenge): masked, like everything credflow prints of what a server sent.
        for (name, value) in response.headers() {
            eprintln!("< {name}: {}", client.redact(value.to_str().unwrap_or("<binary>")));
        }
    }
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Failure::from(Error::from_reqwest("reading the body", e)))?;
    // An error body is the server's diagnosis, which may echo the credentials: masked. A
    // success body is the caller's data, returned as it came.
    let shown = if status.is_success() {
        std::borrow::Cow::Borrowed(&bytes[..])
    } else {
        client.redact_bytes(&bytes)
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&shown);
    if !shown.ends_with(b"\n") && std::io::stdout().is_terminal() {
        let _ = writeln!(out);
    }
    if status.is_success() {
        Ok(())
    } else {
        Err(Failure { code: 1, message: format!("{method} {path}: HTTP {status}") })
    }
}

fn print_token_json(client: &Client, token: &credflow_reqwest::Token) {
    let (requested, granted, check) = client.scope();
    let expires_in = token.expires_in();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let expiry = credflow_core::http::date::format_http_date(credflow_core::UnixTime::from_secs(
        now.saturating_add(expires_in.as_secs()),
    ));
    let value = serde_json::json!({
        "access_token": token.as_str(),
        "token_type": "Bearer",
        "expires_in": expires_in.as_secs(),
        "expires_at": expiry.as_str(),
        "scope_requested": requested,
        "scope_granted": granted,
        "scope_check": format!("{check:?}"),
        "credential_fingerprint": client.fingerprint().to_string(),
        "token_fingerprint": token.fingerprint().to_string(),
        "token_url": client.token_url(),
    });
    println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
}

impl From<Error> for Box<Failure> {
    fn from(e: Error) -> Self {
        Box::new(Failure::from(e))
    }
}
