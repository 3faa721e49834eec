//! `credflow`: OAuth 2.0 client-credentials tokens, authenticated API calls, setup diagnosis and
//! an offline demo, for Genesys Cloud and any OAuth2 server.
//!
//! Exit codes: 0 success; 1 the API answered an error status, returned as is (or standard output
//! could not be written); 2 usage or configuration error (a plain http:// URL to a host that is
//! not loopback without --allow-insecure-http, userinfo in a URL), or a token URL that answers
//! with something else than a usable token; 3 credentials rejected; 4 scope or permission
//! problem; 5 unavailable (retries exhausted, breaker open, rate-limited beyond the longest
//! accepted wait, no token in time); 141 a closed pipe (standard output or error): the reader
//! went away (see the `output` module).
//!
//! Nothing it prints of what a server sent (errors, `-v` headers, error bodies, logs) shows the
//! client's secret, Basic credentials, assertion or token: echoes are masked.

mod check;
mod demo;
mod output;
mod progress;
mod proxy;
mod scope_probe;
mod url_arg;
mod wipe;

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use credflow_core::env::parse_environment;
use credflow_core::env::{CLIENT_ID_VARIABLES, Conflict, ENVIRONMENT_VARIABLES};
use credflow_core::http::url::Url;
use credflow_core::secret::Credentials;
use credflow_emulator::EmulatorArgs;
use credflow_reqwest::config::{
    DEFAULT_MAX_RESPONSE_BODY, ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_CLIENT_SECRET_FILE,
    ENV_OAUTHCLIENT_ID, ENV_OAUTHCLIENT_SECRET, check_url, client_id, read_ca_file,
    same_environment, secret_from_environment,
};
use credflow_reqwest::{AuthMethod, Client, Config, Error, RequestOptions};

use crate::url_arg::UrlArg;

/// How long one API call of `get`, `request`, `check` or `scope-probe` takes at most, a token,
/// waits and retries included.
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);

/// Sends `request` through `client` within [`REQUEST_DEADLINE`]: a server answering
/// `Retry-After: 3600` makes the command give up at once, naming the wait, instead of sleeping.
async fn send_within_deadline(
    client: &Client,
    request: reqwest::Request,
) -> Result<reqwest::Response, Error> {
    let options = RequestOptions { deadline: Some(REQUEST_DEADLINE), ..RequestOptions::default() };
    client.send_with(request, options).await
}

/// Keeps machine-to-machine OAuth 2.0 access working: tokens, API calls, diagnosis.
#[derive(Debug, Parser)]
#[command(name = "credflow", version, about, long_about = None)]
#[command(after_help = "The client secret is read from GENESYS_CLIENT_SECRET (or \
GENESYSCLOUD_OAUTHCLIENT_SECRET, the name of Genesys's own tooling) or --client-secret-file, never \
from a flag value. Genesys tooling's names are accepted beside the guide's for the client id and \
the environment too (GENESYSCLOUD_OAUTHCLIENT_ID, GENESYSCLOUD_REGION); both set to different \
values is refused. Plain http:// URLs are refused except to loopback \
(127.0.0.0/8, [::1], localhost) unless --allow-insecure-http.\n\nExit codes: 0 ok, 1 the API \
answered an error status (body printed) or output failed, 2 configuration (or a token URL that \
does not answer with a usable token), 3 credentials rejected, 4 scope or permission, \
5 unavailable, 141 standard output or error closed (a pipe whose reader went away).")]
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
    /// Genesys Cloud environment: mypurecloud.ie, eu-west-1, api.mypurecloud.ie, … [env:
    /// GENESYS_ENV_NAME or GENESYSCLOUD_REGION].
    #[arg(long, global = true, value_name = "NAME")]
    env: Option<String>,
    /// Token endpoint of any OAuth2 server (with --api-base, except for `token`).
    #[arg(
        long,
        global = true,
        env = "CREDFLOW_TOKEN_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    token_url: Option<UrlArg>,
    /// API base URL that goes with --token-url.
    #[arg(
        long,
        global = true,
        env = "CREDFLOW_API_BASE",
        hide_env_values = true,
        value_name = "URL"
    )]
    api_base: Option<UrlArg>,
    /// OAuth client id [env: GENESYS_CLIENT_ID or GENESYSCLOUD_OAUTHCLIENT_ID].
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
    /// Allow plain http:// to hosts that are not loopback: credentials and tokens then cross
    /// the network in clear text (a warning is printed). Loopback needs no flag.
    #[arg(long, global = true)]
    allow_insecure_http: bool,
    /// PEM file of certificate authorities to trust besides the system's (a TLS-inspecting
    /// proxy's, `credflow emulator --tls`'s test CA). For `proxy --redis rediss://…`, the
    /// only CAs the Redis server's certificate may chain to.
    #[arg(long, global = true, value_name = "PATH")]
    ca_file: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print an access token (for TOKEN=$(credflow token)).
    Token {
        /// Print type, expiry, scope and fingerprints as JSON instead (not the token itself).
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
        /// Also tell whether the API counts its rate limit per client id or per token, from
        /// the rate-limit headers of two tokens used side by side (two token requests of its own).
        #[arg(long)]
        rate_limit_scope: bool,
    },
    /// Narrate a scenario against the built-in emulator: no credentials, no network.
    Demo {
        /// Print every request the emulator sees.
        #[arg(long)]
        show_requests: bool,
    },
    /// Run the Genesys Cloud emulator on 127.0.0.1.
    Emulator(EmulatorArgs),
    /// Run a local sidecar that forwards API requests with credflow's token, pacing and
    /// retries: SDKs in any language point their API host at it.
    Proxy(proxy::ProxyArgs),
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

/// [`Failure::from`] for an error of `client`'s, its text masked with every credential the
/// client knows: the tokens it replaced too (the session masked the error with those it held
/// when the error came; a request sent before a refresh may be answered with the old token
/// echoed).
fn failure_of(client: &Client, e: Error) -> Failure {
    let mut failure = Failure::from(e);
    failure.message = client.redact(&failure.message).into_owned();
    failure
}

/// An error of `client`'s as text to print, masked as [`failure_of`] masks it.
fn shown(client: &Client, e: &Error) -> String {
    client.redact(&e.to_string()).into_owned()
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help, version or a usage error; clap's own `exit` would swallow a closed pipe and
        // report success for help that never arrived.
        Err(e) => {
            if e.print().is_err_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
                return ExitCode::from(output::BROKEN_PIPE);
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    init_logging(cli.verbose, matches!(cli.command, Command::Proxy(_)));
    // The proxy runs on one thread unless told otherwise (--threads): a request's tasks (the
    // local connection, the upstream connection, the token driver) wake each other without
    // crossing threads or stealing work, which costs less CPU per request than a worker per
    // core (cli/benches/proxy.rs), and one core serves far more requests than an API's rate
    // limit lets through.
    let runtime = match &cli.command {
        Command::Proxy(args) if args.threads.get() == 1 => {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        }
        Command::Proxy(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads.get())
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            output::errln!("credflow: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // The failure's own code, even when standard error is closed: it says more than 141.
            let _ = writeln!(std::io::stderr().lock(), "credflow: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Logs on stderr: `CREDFLOW_LOG` (an `EnvFilter`), else by `-v`; a proxy logs its requests and
/// the client's warnings by default.
fn init_logging(verbose: u8, proxy: bool) {
    let default = match verbose {
        0 if proxy => "credflow::proxy=info,credflow_reqwest=warn",
        0 => "off",
        1 => "credflow_reqwest=info",
        _ => "credflow_reqwest=debug,credflow_emulator=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CREDFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| output::LogWriter)
        // Its default reports a failed write with `eprintln!`, which panics on a closed stderr.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

async fn run(mut cli: Cli) -> Result<(), Failure> {
    if !matches!(cli.command, Command::Emulator(_) | Command::Demo { .. }) {
        cli.target.env = environment_name(cli.target.env.take())?;
    }
    match cli.command {
        Command::Emulator(args) => credflow_emulator::run_cli(args).await.map_err(|e| {
            // A configuration the emulator refuses is a usage error (2), as everywhere.
            let code = if matches!(e, credflow_emulator::EmulatorError::Config(_)) { 2 } else { 1 };
            Failure { code, message: format!("emulator: {e}") }
        }),
        Command::Demo { show_requests } => demo::run(show_requests).await,
        Command::Token { json } => {
            let client = Client::new(config_for(&cli.target, ApiBase::NotNeeded)?)?;
            let token = client.token().await.map_err(|e| failure_of(&client, e))?;
            if json {
                print_token_json(&client, &token);
            } else {
                output::outln!("{}", token.as_str());
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
        Command::Check { probes, rate_limit_scope } => {
            check::run(&cli.target, &probes).await?;
            if rate_limit_scope { scope_probe::run(&cli.target).await } else { Ok(()) }
        }
        Command::Proxy(args) => proxy::run(&cli.target, args).await,
    }
}

/// Builds the client from flags and environment; every problem names the flag or variable.
fn build_client(target: &TargetArgs) -> Result<Client, Failure> {
    Client::new(build_config(target)?).map_err(Failure::from)
}

/// Whether the command sends API requests, so needs an API base beside a token URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ApiBase {
    /// `get`, `request`, `check`: `--token-url` goes with `--api-base`.
    Needed,
    /// `token`: a token endpoint is all it talks to.
    NotNeeded,
}

/// The configuration of a command that sends API requests.
fn build_config(target: &TargetArgs) -> Result<Config, Failure> {
    config_for(target, ApiBase::Needed)
}

/// The custom server's token URL and API base as given: an empty value
/// (`CREDFLOW_TOKEN_URL=` from a template) counts as unset, as everywhere.
fn custom_urls(target: &TargetArgs) -> (Option<String>, Option<String>) {
    let given = |value: &Option<UrlArg>| {
        value.as_deref().filter(|v| !v.trim().is_empty()).map(str::to_owned)
    };
    (given(&target.token_url), given(&target.api_base))
}

fn config_for(target: &TargetArgs, api: ApiBase) -> Result<Config, Failure> {
    let (token_url, api_base) = custom_urls(target);
    if let (Some(name), true) = (&target.env, token_url.is_some() || api_base.is_some()) {
        // A URL left in the environment would otherwise win without a word, and the
        // credentials meant for one server go to another: which is meant is not guessed.
        return Err(Failure::usage(format!(
            "two targets: the Genesys Cloud environment {name:?} (--env, GENESYS_ENV_NAME or \
             GENESYSCLOUD_REGION) and a custom server (--token-url/--api-base, or \
             CREDFLOW_TOKEN_URL/CREDFLOW_API_BASE); give one of them"
        )));
    }
    let credentials = load_credentials(target)?;
    let mut config = match (&token_url, &api_base) {
        (Some(token_url), Some(api_base)) => Config::custom(token_url, api_base, credentials),
        (Some(token_url), None) if api == ApiBase::NotNeeded => {
            Config::token_only(token_url, credentials)
        }
        (Some(_), None) => {
            return Err(Failure::usage(
                "--token-url without --api-base: this command sends API requests; pass \
                 --api-base URL (or set CREDFLOW_API_BASE) too",
            ));
        }
        (None, Some(_)) => {
            return Err(Failure::usage(
                "--api-base without --token-url: pass --token-url URL (or set \
                 CREDFLOW_TOKEN_URL) too, or neither and --env NAME",
            ));
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
    config.allow_insecure_http = target.allow_insecure_http;
    if let Some(path) = &target.ca_file {
        config.extra_root_certificates = read_ca_file(path)?;
    }
    check_urls(&config)?;
    Ok(config)
}

/// The environment's name: `--env`, else `GENESYS_ENV_NAME` or `GENESYSCLOUD_REGION` (both set
/// to different environments: refused, naming both).
fn environment_name(flag: Option<String>) -> Result<Option<String>, Failure> {
    if flag.is_some() {
        return Ok(flag);
    }
    let names = (var(ENVIRONMENT_VARIABLES.guide), var(ENVIRONMENT_VARIABLES.tooling));
    let picked = ENVIRONMENT_VARIABLES
        .pick(names.0.as_deref(), names.1.as_deref(), same_environment)
        .map_err(|e| Failure::usage(e.to_string()))?;
    Ok(picked.map(|(_, name)| name.to_owned()))
}

/// A variable of the process environment; unset if not valid UTF-8.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The client id and secret from flags and environment. The secret comes from exactly one
/// place, `GENESYS_CLIENT_SECRET` or a file (`--client-secret-file`, else
/// `GENESYS_CLIENT_SECRET_FILE`): given twice, it is refused, as `Config::from_env` refuses it.
fn load_credentials(target: &TargetArgs) -> Result<Credentials, Failure> {
    let conflict = |e: Conflict| Failure::usage(e.to_string());
    let ids = (var(CLIENT_ID_VARIABLES.guide), var(CLIENT_ID_VARIABLES.tooling));
    let (id_source, id) = match &target.client_id {
        Some(id) => ("--client-id", id.as_str()),
        None => CLIENT_ID_VARIABLES
            .pick(ids.0.as_deref(), ids.1.as_deref(), |a, b| a == b)
            .map_err(conflict)?
            .unwrap_or((ENV_CLIENT_ID, "")),
    };
    if id.is_empty() {
        return Err(Failure::usage(format!(
            "no client id: set {ENV_CLIENT_ID} (or {ENV_OAUTHCLIENT_ID}) or pass --client-id"
        )));
    }
    let file = match &target.client_secret_file {
        Some(path) => Some((path.clone(), "--client-secret-file")),
        None => std::env::var(ENV_CLIENT_SECRET_FILE)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|path| (path, ENV_CLIENT_SECRET_FILE)),
    };
    let file = file.as_ref().map(|(path, source)| (path.as_str(), *source));
    let secret = secret_from_environment(var, file)?.ok_or_else(|| {
        Failure::usage(format!(
            "no client secret: set {ENV_CLIENT_SECRET} (or {ENV_OAUTHCLIENT_SECRET}) or pass \
             --client-secret-file PATH (never a flag value: it would show in process lists \
             and shell history)"
        ))
    })?;
    Ok(Credentials::new(client_id(id, id_source)?, secret))
}

/// Refuses, as the client would, a token URL or API base with userinfo or plain http to a host
/// that is not loopback (unless --allow-insecure-http, then warns): before `check` prints them,
/// and naming the flag.
fn check_urls(config: &Config) -> Result<(), Failure> {
    let urls = [
        ("--token-url", Some(config.target.token_url()), "client credentials"),
        ("--api-base", config.target.api_base(), "bearer tokens"),
    ];
    for (flag, url, secrets) in urls {
        let Some(url) = url else { continue };
        match check_url(flag, url, config.allow_insecure_http) {
            Ok(false) => {}
            Ok(true) => output::errln!(
                "credflow: warning: --allow-insecure-http: {flag} {url} is plain http to a host \
                 that is not loopback; the {secrets} sent there cross the network in clear text"
            ),
            Err(e) => {
                let mut failure = Failure::from(e);
                if Url::parse(url).is_ok_and(|u| u.is_insecure()) {
                    failure
                        .message
                        .push_str("\n  to send in clear text anyway: --allow-insecure-http");
                }
                return Err(failure);
            }
        }
    }
    Ok(())
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
    // One bound for the whole command (a token, waits, retries): a longer wait the server
    // asks for (a token endpoint's `Retry-After: 3600`, a daily quota) fails at once, named,
    // instead of sleeping for it.
    let result = send_within_deadline(client, request).await;
    progress.abort();
    let response = result.map_err(|e| failure_of(client, e))?;
    if verbose > 0 {
        output::errln!(
            "< {:?} {} ({} ms)",
            response.version(),
            response.status(),
            started.elapsed().as_millis()
        );
        // A server may echo the client's credentials in any header (a correlation id, a
        // challenge): masked, like everything credflow prints of what a server sent.
        for (name, value) in response.headers() {
            output::errln!("< {name}: {}", client.redact(value.to_str().unwrap_or("<binary>")));
        }
    }
    let status = response.status();
    let redirect = status.is_redirection().then(|| redirect_target(&response)).flatten();
    // A success body is the caller's data: it goes out as it arrives, however large. An error
    // body is the server's diagnosis, for a human to read: cut at the size the client reads of
    // one, and masked (it may echo the credentials).
    if status.is_success() {
        return copy_body(response).await;
    }
    let cut = print_error_body(client, response).await?;
    let mut message = format!("{method} {path}: HTTP {status}");
    if let Some(to) = redirect {
        message.push_str(&format!(
            "\n  redirected to:  {to} (not followed: another origin, or too many redirects)"
        ));
    }
    if cut {
        message.push_str(&format!("\n  body cut at {DEFAULT_MAX_RESPONSE_BODY} bytes"));
    }
    Err(Failure { code: 1, message })
}

/// Where a redirect the client did not follow points: its origin only (a signed URL's query
/// is nobody's business on a terminal or in a log).
fn redirect_target(response: &reqwest::Response) -> Option<String> {
    let location = response.headers().get(reqwest::header::LOCATION)?.to_str().ok()?;
    let to = response.url().join(location).ok()?;
    Some(format!("{}://{}:{}", to.scheme(), to.host_str()?, to.port_or_known_default()?))
}

/// Copies `response`'s body to standard output as it arrives. A reader that went away
/// (`credflow get … | head`) ends credflow quietly with exit code 141, as every write does (see
/// the `output` module).
async fn copy_body(mut response: reqwest::Response) -> Result<(), Failure> {
    // To a terminal, the server's control characters are shown as U+FFFD (they could set the
    // clipboard, clear the screen, or write over a line); to a pipe or a file, the body is
    // written as it came.
    let terminal = std::io::stdout().is_terminal();
    let mut shown = output::PrintableStream::default();
    let mut last = None;
    while let Some(chunk) = next_chunk(&mut response).await? {
        if terminal {
            output::stdout_bytes(shown.push(&chunk).as_bytes());
        } else {
            output::stdout_bytes(&chunk);
        }
        last = chunk.last().copied().or(last);
    }
    if terminal {
        output::stdout_bytes(shown.finish().as_bytes());
        if last.is_some_and(|b| b != b'\n') {
            output::outln!();
        }
    }
    Ok(())
}

/// Prints an error body: at most [`DEFAULT_MAX_RESPONSE_BODY`] bytes of it, with the client's
/// credentials masked wherever the server echoed them (and a credential's first bytes where the
/// cut falls inside it). Returns whether it was cut.
async fn print_error_body(
    client: &Client,
    mut response: reqwest::Response,
) -> Result<bool, Failure> {
    // The body as it came, any echo unmasked: wiped when dropped, and as it grows.
    let mut body = zeroize::Zeroizing::new(Vec::new());
    let mut cut = false;
    while let Some(chunk) = next_chunk(&mut response).await? {
        let room = DEFAULT_MAX_RESPONSE_BODY.saturating_sub(body.len());
        wipe::extend_wiped(&mut body, chunk.get(..chunk.len().min(room)).unwrap_or_default());
        if chunk.len() > room {
            cut = true;
            break;
        }
    }
    let shown = if cut { client.redact_cut_bytes(&body) } else { client.redact_bytes(&body) };
    let shown = output::printable(&shown);
    output::stdout_bytes(shown.as_bytes());
    if !shown.is_empty() && !shown.ends_with('\n') && std::io::stdout().is_terminal() {
        output::outln!();
    }
    Ok(cut)
}

async fn next_chunk(
    response: &mut reqwest::Response,
) -> Result<Option<impl std::ops::Deref<Target = [u8]>>, Failure> {
    response.chunk().await.map_err(|e| Failure::from(Error::from_reqwest("reading the body", e)))
}

/// `token --json`: what the token is (type, expiry, scope, fingerprints), never the token: it is
/// metadata for logs and tickets.
fn print_token_json(client: &Client, token: &credflow_reqwest::Token) {
    let (requested, granted, check) = client.scope();
    let expires_in = token.expires_in();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let expiry = credflow_core::http::date::format_http_date(credflow_core::UnixTime::from_secs(
        now.saturating_add(expires_in.as_secs()),
    ));
    let value = serde_json::json!({
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
    output::outln!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
}

impl From<Error> for Box<Failure> {
    fn from(e: Error) -> Self {
        Box::new(Failure::from(e))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every flag read from a variable, in every subcommand, keeps the variable's value out of
    /// its help (it may be a URL with a password, or name a secret's path): one added later
    /// without `hide_env_values` fails here.
    #[test]
    fn no_help_shows_a_variables_value() {
        fn check(command: &clap::Command, path: &str) {
            for arg in command.get_arguments() {
                if let Some(name) = arg.get_env() {
                    assert!(
                        arg.is_hide_env_values_set(),
                        "{path} --{}: [env: {name:?}] shows its value in --help",
                        arg.get_id()
                    );
                }
            }
            for sub in command.get_subcommands() {
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        let command = Cli::command();
        check(&command, "credflow");
    }

    /// The parsed command line's `Debug` (derived, for whoever logs or asserts on it) hides a
    /// password in any URL it holds: a Redis URL's userinfo or `pass=` (a `redis+unix://` URL
    /// carries it so), a token URL's userinfo.
    #[test]
    fn the_parsed_command_lines_debug_hides_url_passwords() {
        for (redis, kept) in [
            (
                "redis://fleet:hunter2@redis.internal:6379/0",
                "redis://fleet:***@redis.internal:6379/0",
            ),
            ("rediss://:hunter2@redis.internal", "rediss://:***@redis.internal"),
            ("redis+unix:///run/redis.sock?db=1&pass=hunter2&user=u", "?db=1&pass=***&user=u"),
            ("redis+unix:///run/redis.sock?Password=hunter2", "redis.sock?Password=***"),
            ("redis+unix:///run/redis.sock?pa%73s=hunter2", "?pa%73s=***"),
        ] {
            let cli = Cli::try_parse_from([
                "credflow",
                "--token-url",
                "https://id:hunter2@login.example/oauth/token",
                "--api-base",
                "https://api.example",
                "proxy",
                "--redis",
                redis,
            ])
            .unwrap();
            let debug = format!("{cli:?}");
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(debug.contains(kept), "{redis}: {debug}");
            assert!(debug.contains("https://id:***@login.example/oauth/token"), "{debug}");
            let Command::Proxy(args) = &cli.command else { panic!("{debug}") };
            assert_eq!(args.redis.as_deref(), Some(redis), "the value itself is kept whole");
        }
    }
}
