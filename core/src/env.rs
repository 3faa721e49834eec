//! Genesys Cloud environments (regions), and reading the one a user typed.
//!
//! [`ENVIRONMENTS`] lists the 18 environments every official Genesys Cloud SDK knows
//! (`purecloud_region_hosts.py` in the Python SDK; the same list in the JS, Java, Go and .NET
//! SDKs). Each is isolated: a token from one is invalid in every other, which is the usual cause
//! of `invalid_client` or a 401 right after a configuration change.
//!
//! [`parse_environment`] accepts what people paste into a config file:
//!
//! - the region, `eu-west-1` (any case, `_` for `-` as in the SDKs' enum names);
//! - the domain, `mypurecloud.ie`, or a host in it, `api.mypurecloud.ie`, `login.mypurecloud.ie`,
//!   `apps.mypurecloud.ie`;
//! - the short code of a newer region's domain, `usw2` for `usw2.pure.cloud`;
//! - a URL, `https://api.mypurecloud.ie/api/v2`, `https://login.mypurecloud.ie/` (the scheme,
//!   port, path, query and fragment are ignored);
//! - surrounding whitespace and trailing dots or slashes.
//!
//! Anything else is [`EnvError::Unknown`], with a suggestion when one environment is clearly
//! meant: a typo within a small edit distance (`mypurecloud.co` → `mypurecloud.com`, `eu-west1` →
//! `eu-west-1`), or a host whose first label is a region or short code
//! (`usw2.platform.mygenesys.com`, a wrong example from the reference guide, → `usw2.pure.cloud`).
//! When two environments are equally close (`eu-west-3`), nothing is suggested rather than a
//! guess.
//!
//! Custom hosts (a proxy, a private deployment, a test server) are deliberately **not** accepted
//! here: a token URL is where the client secret is sent, so pointing it anywhere but Genesys must
//! be an explicit opt-in made elsewhere, never the result of a typo being "close enough".

use core::fmt;

/// A Genesys Cloud environment: a region and the hosts it serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Environment {
    /// The AWS-style region name, e.g. `eu-west-1`.
    pub region: &'static str,
    /// The environment's domain (host suffix), e.g. `mypurecloud.ie`.
    pub domain: &'static str,
    /// The login host, e.g. `login.mypurecloud.ie`.
    pub login_host: &'static str,
    /// The API host, e.g. `api.mypurecloud.ie`.
    pub api_host: &'static str,
    /// The token endpoint, e.g. `https://login.mypurecloud.ie/oauth/token`.
    pub token_url: &'static str,
    /// The API base URL, e.g. `https://api.mypurecloud.ie` (paths start with `/api/v2`).
    pub api_base: &'static str,
}

impl Environment {
    /// The first label of the domain when it is a region code (`usw2` in `usw2.pure.cloud`);
    /// `None` for the original `mypurecloud.*` domains.
    #[must_use]
    pub fn short_code(&self) -> Option<&'static str> {
        if self.domain.starts_with("mypurecloud.") {
            return None;
        }
        self.domain.split('.').next()
    }
}

impl fmt::Display for Environment {
    /// `mypurecloud.ie (eu-west-1)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.domain, self.region)
    }
}

macro_rules! environment {
    ($region:literal, $domain:literal) => {
        Environment {
            region: $region,
            domain: $domain,
            login_host: concat!("login.", $domain),
            api_host: concat!("api.", $domain),
            token_url: concat!("https://login.", $domain, "/oauth/token"),
            api_base: concat!("https://api.", $domain),
        }
    };
}

/// Every Genesys Cloud environment, in the order the SDKs list them.
pub static ENVIRONMENTS: [Environment; 18] = [
    environment!("us-east-1", "mypurecloud.com"),
    environment!("eu-west-1", "mypurecloud.ie"),
    environment!("ap-southeast-2", "mypurecloud.com.au"),
    environment!("ap-northeast-1", "mypurecloud.jp"),
    environment!("eu-central-1", "mypurecloud.de"),
    environment!("us-west-2", "usw2.pure.cloud"),
    environment!("ca-central-1", "cac1.pure.cloud"),
    environment!("ap-northeast-2", "apne2.pure.cloud"),
    environment!("eu-west-2", "euw2.pure.cloud"),
    environment!("ap-south-1", "aps1.pure.cloud"),
    // FedRAMP.
    environment!("us-east-2", "use2.us-gov-pure.cloud"),
    environment!("sa-east-1", "sae1.pure.cloud"),
    environment!("me-central-1", "mec1.pure.cloud"),
    environment!("ap-northeast-3", "apne3.pure.cloud"),
    environment!("eu-central-2", "euc2.pure.cloud"),
    environment!("mx-central-1", "mxc1.pure.cloud"),
    environment!("ap-southeast-1", "apse1.pure.cloud"),
    environment!("eusc-de-east-1", "edee1.eusc-pure.cloud"),
];

/// Why an environment name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EnvError {
    /// Nothing was given (an unset or blank variable in the configuration, most likely).
    Empty,
    /// Not a Genesys Cloud region, domain or host: a typo, another product's host, or a custom
    /// host (which must be configured explicitly, not through this parser).
    Unknown {
        /// The environment that was most likely meant, if one is clearly closest.
        suggestion: Option<&'static Environment>,
    },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::Empty => f.write_str(
                "no Genesys Cloud environment given (expected a region such as eu-west-1 or a \
                 domain such as mypurecloud.ie)",
            ),
            EnvError::Unknown { suggestion: Some(env) } => {
                write!(f, "unknown Genesys Cloud environment; did you mean {env}?")
            }
            EnvError::Unknown { suggestion: None } => f.write_str(
                "unknown Genesys Cloud environment (expected a region such as eu-west-1 or a \
                 domain such as mypurecloud.ie; custom hosts need an explicit opt-in)",
            ),
        }
    }
}

impl core::error::Error for EnvError {}

/// Longest input considered, in bytes; anything longer is not an environment name.
const MAX_INPUT: usize = 256;

/// Reads an environment from what a user typed (see the module docs for the accepted forms).
///
/// ```
/// use credflow_core::env::{parse_environment, EnvError};
///
/// let ie = parse_environment("https://api.mypurecloud.ie/api/v2").unwrap();
/// assert_eq!(ie.region, "eu-west-1");
/// assert_eq!(ie.token_url, "https://login.mypurecloud.ie/oauth/token");
/// assert_eq!(parse_environment(" EU-WEST-1 "), Ok(ie));
///
/// let err = parse_environment("mypurecloud.co").unwrap_err();
/// assert_eq!(err.to_string(), "unknown Genesys Cloud environment; did you mean mypurecloud.com (us-east-1)?");
/// assert_eq!(parse_environment("  "), Err(EnvError::Empty));
/// ```
pub fn parse_environment(input: &str) -> Result<&'static Environment, EnvError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(EnvError::Empty);
    }
    let mut buf = [0u8; MAX_INPUT];
    let Some(lower) = buf.get_mut(..trimmed.len()) else {
        return Err(EnvError::Unknown { suggestion: None });
    };
    lower.copy_from_slice(trimmed.as_bytes());
    lower.make_ascii_lowercase();
    let name = normalize(lower);

    if let Some(env) = ENVIRONMENTS.iter().find(|env| matches_exactly(env, name)) {
        return Ok(env);
    }
    Err(EnvError::Unknown { suggestion: suggest(name) })
}

/// Strips a scheme, path, port, trailing dots and a well-known host prefix.
fn normalize(mut s: &[u8]) -> &[u8] {
    for scheme in [&b"https://"[..], b"http://"] {
        if let Some(rest) = s.strip_prefix(scheme) {
            s = rest;
            break;
        }
    }
    if let Some(end) = s.iter().position(|b| matches!(b, b'/' | b'?' | b'#' | b':')) {
        s = s.get(..end).unwrap_or(s);
    }
    while let Some(rest) = s.strip_suffix(b".") {
        s = rest;
    }
    for prefix in [&b"api."[..], b"login.", b"apps."] {
        if let Some(rest) = s.strip_prefix(prefix) {
            return rest;
        }
    }
    s
}

/// Whether `name` (lower case, normalized) is this environment's domain, region or short code.
fn matches_exactly(env: &Environment, name: &[u8]) -> bool {
    name == env.domain.as_bytes()
        || is_region(name, env.region)
        || env.short_code().is_some_and(|code| name == code.as_bytes())
}

/// `name` equals `region`, reading `_` as `-`.
fn is_region(name: &[u8], region: &str) -> bool {
    name.len() == region.len()
        && name.iter().zip(region.bytes()).all(|(&a, b)| a == b || (a == b'_' && b == b'-'))
}

/// The environment clearly meant by an unknown `name`, if any: the unique nearest spelling
/// within a small edit distance, else the environment a host's first label names.
fn suggest(name: &[u8]) -> Option<&'static Environment> {
    nearest_spelling(name).or_else(|| named_by_first_label(name))
}

/// A typo: the unique nearest spelling (domain, region or short code) within a small edit
/// distance. `usw2.us-gov-pure.cloud` is one edit from `use2.us-gov-pure.cloud`, so this comes
/// before the first-label rule.
fn nearest_spelling(name: &[u8]) -> Option<&'static Environment> {
    let max_distance = match name.len() {
        0..=2 => return None,
        3..=7 => 1,
        _ => 2,
    };
    let mut best: Option<(usize, &'static Environment)> = None;
    let mut tied = false;
    for env in &ENVIRONMENTS {
        let forms = [Some(env.domain), Some(env.region), env.short_code()];
        let Some(distance) =
            forms.into_iter().flatten().filter_map(|form| levenshtein(name, form.as_bytes())).min()
        else {
            continue;
        };
        match best {
            Some((d, _)) if distance > d => {}
            Some((d, _)) if distance == d => tied = true,
            _ => {
                best = Some((distance, env));
                tied = false;
            }
        }
    }
    match best {
        Some((distance, env)) if distance <= max_distance && !tied => Some(env),
        _ => None,
    }
}

/// A host whose first label is a region or short code: `usw2.platform.mygenesys.com`.
fn named_by_first_label(name: &[u8]) -> Option<&'static Environment> {
    let first_label = name.split(|&b| b == b'.').next().unwrap_or(name);
    if first_label.len() == name.len() {
        return None;
    }
    ENVIRONMENTS.iter().find(|env| {
        is_region(first_label, env.region)
            || env.short_code().is_some_and(|code| first_label == code.as_bytes())
    })
}

/// Longest string [`levenshtein`] compares.
const MAX_EDIT_LEN: usize = 48;

/// The edit distance between `a` and `b` (insertions, deletions, substitutions), computed with
/// two rows on the stack; `None` if either is longer than [`MAX_EDIT_LEN`].
fn levenshtein(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() > MAX_EDIT_LEN || b.len() > MAX_EDIT_LEN {
        return None;
    }
    let mut prev = [0usize; MAX_EDIT_LEN + 1];
    let mut cur = [0usize; MAX_EDIT_LEN + 1];
    for (j, slot) in prev.iter_mut().enumerate() {
        *slot = j;
    }
    for (i, &ca) in a.iter().enumerate() {
        *cur.first_mut()? = i.saturating_add(1);
        for (j, &cb) in b.iter().enumerate() {
            let next = j.saturating_add(1);
            let delete = prev.get(next)?.saturating_add(1);
            let insert = cur.get(j)?.saturating_add(1);
            let substitute = prev.get(j)?.saturating_add(usize::from(ca != cb));
            *cur.get_mut(next)? = delete.min(insert).min(substitute);
        }
        core::mem::swap(&mut prev, &mut cur);
    }
    prev.get(b.len()).copied()
}

/// One setting's environment variables: the name credflow's guide uses, then the name of
/// Genesys's own tooling (the Terraform provider, the CLI, the SDK samples). Both are
/// accepted; see [`Variables::pick`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variables {
    /// The guide's name, e.g. `GENESYS_CLIENT_ID`.
    pub guide: &'static str,
    /// Genesys tooling's name, e.g. `GENESYSCLOUD_OAUTHCLIENT_ID`.
    pub tooling: &'static str,
}

/// The OAuth client id: `GENESYS_CLIENT_ID` or `GENESYSCLOUD_OAUTHCLIENT_ID`.
pub const CLIENT_ID_VARIABLES: Variables =
    Variables { guide: "GENESYS_CLIENT_ID", tooling: "GENESYSCLOUD_OAUTHCLIENT_ID" };
/// The OAuth client secret: `GENESYS_CLIENT_SECRET` or `GENESYSCLOUD_OAUTHCLIENT_SECRET`.
pub const CLIENT_SECRET_VARIABLES: Variables =
    Variables { guide: "GENESYS_CLIENT_SECRET", tooling: "GENESYSCLOUD_OAUTHCLIENT_SECRET" };
/// The environment: `GENESYS_ENV_NAME` or `GENESYSCLOUD_REGION` (both read by
/// [`parse_environment`]: `eu-west-1` and `mypurecloud.ie` are the same environment).
pub const ENVIRONMENT_VARIABLES: Variables =
    Variables { guide: "GENESYS_ENV_NAME", tooling: "GENESYSCLOUD_REGION" };

/// One setting given under both of its names, with different values: which one is meant is
/// not guessed. `Display` names both variables, never their values (one may be a secret).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Conflict {
    /// The guide's name.
    pub guide: &'static str,
    /// Genesys tooling's name.
    pub tooling: &'static str,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "both {} and {} are set, to different values: which one is meant is not guessed; \
             keep one",
            self.guide, self.tooling
        )
    }
}

impl core::error::Error for Conflict {}

impl Variables {
    /// The setting's value from `guide` (the value of [`Variables::guide`], `None` if unset)
    /// and `tooling`, with the name it came from. An empty value counts as unset (as a
    /// template's `NAME=` leaves it). Both set: the same value (as `same` compares them) is
    /// taken, under the guide's name; different values are a [`Conflict`].
    ///
    /// ```
    /// use credflow_core::env::{CLIENT_ID_VARIABLES, ENVIRONMENT_VARIABLES, parse_environment};
    ///
    /// let exact = |a: &str, b: &str| a == b;
    /// assert_eq!(
    ///     CLIENT_ID_VARIABLES.pick(None, Some("abc"), exact),
    ///     Ok(Some(("GENESYSCLOUD_OAUTHCLIENT_ID", "abc")))
    /// );
    /// assert!(CLIENT_ID_VARIABLES.pick(Some("abc"), Some("xyz"), exact).is_err());
    /// // The same environment, named two ways.
    /// let same_env = |a: &str, b: &str| parse_environment(a).is_ok() && parse_environment(a) == parse_environment(b);
    /// assert!(ENVIRONMENT_VARIABLES.pick(Some("mypurecloud.ie"), Some("eu-west-1"), same_env).is_ok());
    /// ```
    pub fn pick<'v>(
        &self,
        guide: Option<&'v str>,
        tooling: Option<&'v str>,
        same: impl Fn(&str, &str) -> bool,
    ) -> Result<Option<(&'static str, &'v str)>, Conflict> {
        let guide = guide.filter(|v| !v.is_empty());
        let tooling = tooling.filter(|v| !v.is_empty());
        match (guide, tooling) {
            (Some(a), Some(b)) if !same(a, b) => {
                Err(Conflict { guide: self.guide, tooling: self.tooling })
            }
            (Some(a), _) => Ok(Some((self.guide, a))),
            (None, Some(b)) => Ok(Some((self.tooling, b))),
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::format;
    use std::string::ToString;

    fn region_of(input: &str) -> Result<&'static str, EnvError> {
        parse_environment(input).map(|e| e.region)
    }

    fn suggestion(input: &str) -> Option<&'static str> {
        match parse_environment(input) {
            Err(EnvError::Unknown { suggestion }) => suggestion.map(|e| e.region),
            other => panic!("{input:?} gave {other:?}"),
        }
    }

    #[test]
    fn table_matches_genesys_md() {
        let expected = [
            ("us-east-1", "mypurecloud.com"),
            ("eu-west-1", "mypurecloud.ie"),
            ("ap-southeast-2", "mypurecloud.com.au"),
            ("ap-northeast-1", "mypurecloud.jp"),
            ("eu-central-1", "mypurecloud.de"),
            ("us-west-2", "usw2.pure.cloud"),
            ("ca-central-1", "cac1.pure.cloud"),
            ("ap-northeast-2", "apne2.pure.cloud"),
            ("eu-west-2", "euw2.pure.cloud"),
            ("ap-south-1", "aps1.pure.cloud"),
            ("us-east-2", "use2.us-gov-pure.cloud"),
            ("sa-east-1", "sae1.pure.cloud"),
            ("me-central-1", "mec1.pure.cloud"),
            ("ap-northeast-3", "apne3.pure.cloud"),
            ("eu-central-2", "euc2.pure.cloud"),
            ("mx-central-1", "mxc1.pure.cloud"),
            ("ap-southeast-1", "apse1.pure.cloud"),
            ("eusc-de-east-1", "edee1.eusc-pure.cloud"),
        ];
        for (env, (region, domain)) in ENVIRONMENTS.iter().zip(expected) {
            assert_eq!((env.region, env.domain), (region, domain));
            assert_eq!(env.login_host, format!("login.{domain}"));
            assert_eq!(env.api_host, format!("api.{domain}"));
            assert_eq!(env.token_url, format!("https://login.{domain}/oauth/token"));
            assert_eq!(env.api_base, format!("https://api.{domain}"));
        }
    }

    #[test]
    fn every_row_in_every_form() {
        for env in &ENVIRONMENTS {
            let (r, d) = (env.region, env.domain);
            for input in [
                r.to_string(),
                r.to_uppercase(),
                r.replace('-', "_"),
                format!("  {r}\n"),
                d.to_string(),
                d.to_uppercase(),
                format!("{d}."),
                format!("{d}/"),
                format!("api.{d}"),
                format!("login.{d}"),
                format!("apps.{d}"),
                format!("https://login.{d}/"),
                format!("https://login.{d}/oauth/token"),
                format!("https://api.{d}/api/v2"),
                format!("HTTPS://API.{}:443/api/v2?x=1#y", d.to_uppercase()),
                format!("http://{d}"),
                format!("\t{d}../ "),
            ] {
                assert_eq!(parse_environment(&input), Ok(env), "{input:?}");
            }
        }
    }

    #[test]
    fn short_codes() {
        assert_eq!(region_of("usw2"), Ok("us-west-2"));
        assert_eq!(region_of("EUW2"), Ok("eu-west-2"));
        assert_eq!(region_of("edee1"), Ok("eusc-de-east-1"));
        assert_eq!(ENVIRONMENTS[0].short_code(), None);
        assert_eq!(ENVIRONMENTS[10].short_code(), Some("use2"));
    }

    #[test]
    fn typos_get_a_suggestion() {
        assert_eq!(suggestion("mypurecloud.co"), Some("us-east-1"));
        assert_eq!(suggestion("eu-west1"), Some("eu-west-1"));
        assert_eq!(suggestion("us-east1"), Some("us-east-1"));
        assert_eq!(suggestion("mypurecloud.i"), Some("eu-west-1"));
        assert_eq!(suggestion("purecloud.com"), Some("us-east-1"));
        assert_eq!(suggestion("usw2.pure.clod"), Some("us-west-2"));
        assert_eq!(suggestion("usw"), Some("us-west-2"));
        assert_eq!(suggestion("https://api.mypurecloud.cmo/api/v2"), Some("us-east-1"));
        // The reference guide's wrong example: the first label names the region.
        assert_eq!(suggestion("usw2.platform.mygenesys.com"), Some("us-west-2"));
        assert_eq!(suggestion("eu-west-1.example.com"), Some("eu-west-1"));
        // A typo in the short code of a longer domain: the spelling wins over the label.
        assert_eq!(suggestion("usw2.us-gov-pure.cloud"), Some("us-east-2"));
    }

    #[test]
    fn no_suggestion_when_ambiguous_or_far() {
        assert_eq!(suggestion("eu-west-3"), None); // eu-west-1 and eu-west-2 are equally close
        assert_eq!(suggestion("mypurecloud.au"), None); // .de, .ie, .jp tie
        assert_eq!(suggestion("apne"), None); // apne2 and apne3 tie
        assert_eq!(suggestion("jp"), None);
        assert_eq!(suggestion("example.com"), None);
        assert_eq!(suggestion("localhost"), None);
        assert_eq!(suggestion("https://"), None);
        assert_eq!(suggestion(&"x".repeat(300)), None);
        assert_eq!(suggestion(&"mypurecloud.com".repeat(10)), None);
    }

    #[test]
    fn empty() {
        assert_eq!(parse_environment(""), Err(EnvError::Empty));
        assert_eq!(parse_environment(" \t\n"), Err(EnvError::Empty));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            format!("{}", parse_environment("mypurecloud.co").unwrap_err()),
            "unknown Genesys Cloud environment; did you mean mypurecloud.com (us-east-1)?"
        );
        assert_eq!(
            format!("{}", parse_environment("usw2.platform.mygenesys.com").unwrap_err()),
            "unknown Genesys Cloud environment; did you mean usw2.pure.cloud (us-west-2)?"
        );
        assert!(format!("{}", EnvError::Unknown { suggestion: None }).contains("explicit opt-in"));
        assert!(format!("{}", EnvError::Empty).contains("no Genesys Cloud environment"));
    }

    #[test]
    fn levenshtein_basics() {
        assert_eq!(levenshtein(b"", b""), Some(0));
        assert_eq!(levenshtein(b"abc", b""), Some(3));
        assert_eq!(levenshtein(b"kitten", b"sitting"), Some(3));
        assert_eq!(levenshtein(b"flaw", b"lawn"), Some(2));
        assert_eq!(levenshtein(&[b'a'; 49], b"a"), None);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = parse_environment(&s);
        }

        #[test]
        fn one_typo_in_a_long_domain_is_suggested_or_exact(index in 0usize..18, at in 0usize..12, c in "[a-z]") {
            let env = &ENVIRONMENTS[index];
            let mut typo: std::vec::Vec<u8> = env.domain.as_bytes().to_vec();
            let at = at % typo.len();
            typo[at] = c.as_bytes()[0];
            let typo = std::string::String::from_utf8(typo).unwrap();
            match parse_environment(&typo) {
                Ok(found) => prop_assert!(found == env || found.domain == typo),
                // Another environment only when the typo made the first label name it.
                Err(EnvError::Unknown { suggestion: Some(s) }) => prop_assert!(
                    s == env || typo.split('.').next() == s.short_code()
                ),
                // A typo can land equally close to another environment; then nothing is guessed.
                Err(EnvError::Unknown { suggestion: None }) => {}
                Err(EnvError::Empty) => prop_assert!(false),
            }
        }
    }
}
