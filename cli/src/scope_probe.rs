//! `credflow check --rate-limit-scope`: whether the API counts its rate limit per client id or
//! per access token, from the rate-limit headers of two tokens used side by side.
//!
//! Genesys Cloud's scope is disputed (issue 19; GENESYS.md, "Rate limits on the API"), and it
//! decides what a fleet sharing one token costs. The probe takes two tokens of its own (two
//! token requests, nothing more: they are dropped at the end) and sends `GET /api/v2/tokens/me`:
//!
//! 1. two requests with token A (A's count: `a1`, then `a2`);
//! 2. one with token B (`b1`);
//! 3. one more with token A (`a3`).
//!
//! Per client id, B continues A's count (`b1 > a2`) and A continues B's (`a3 > b1`). Per token,
//! B starts its own count (`b1 <= a2`, usually 1) while A's goes on as if B had not sent
//! (`a3 > a2`). A window that rolls over in between (A's reset jumps up) or traffic of other
//! processes on the same client can blur it: then the probe says it cannot tell, or how sure it
//! is, and running it again (or at a quieter moment) settles it.

use std::time::Duration;

use credflow_core::ratelimit::headers::parse_rate_limit;
use credflow_reqwest::Client;

use crate::output::outln;
use crate::{Failure, TargetArgs, build_config};

/// What one response said: requests counted in its window, the limit, time to the reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reading {
    count: u64,
    limit: u64,
    reset: Duration,
}

/// The probe's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Each token its own window.
    PerToken,
    /// One window for every token of the client.
    PerClient,
    /// The readings do not tell (a window rolled over, other traffic, contradictory counts).
    Unclear,
}

/// Reads the four counts (A, A, B, A) as described in the module docs.
fn judge(a1: Reading, a2: Reading, b1: Reading, a3: Reading) -> (Verdict, &'static str) {
    // A's window rolled over between its readings (its reset moved later by more than the
    // whole-second rounding, or its count went down): nothing can be compared.
    let rolled = |before: Reading, after: Reading| {
        after.reset > before.reset + Duration::from_secs(1) || after.count < before.count
    };
    if rolled(a1, a2) || rolled(a2, a3) {
        return (Verdict::Unclear, "token A's window rolled over during the probe; run it again");
    }
    if b1.count <= a2.count && a3.count > a2.count {
        // B restarted while A's window went on.
        if b1.count == 1 && a3.count == a2.count + 1 {
            (Verdict::PerToken, "sure: token B counted from 1 while token A's count went on by one")
        } else {
            (
                Verdict::PerToken,
                "fairly sure: token B counted on its own while token A's window went on; other \
                 traffic on these tokens moved the counts",
            )
        }
    } else if b1.count > a2.count && a3.count > b1.count {
        if b1.count == a2.count + 1 && a3.count == b1.count + 1 {
            (Verdict::PerClient, "sure: token B continued token A's count, and A continued B's")
        } else {
            (
                Verdict::PerClient,
                "fairly sure: both tokens' requests landed in one count; other processes of this \
                 client moved it too",
            )
        }
    } else {
        (Verdict::Unclear, "the counts fit neither scope (other traffic?); run it again")
    }
}

/// One request with `client`'s token; its reading, or why there is none.
async fn read(client: &Client, label: &str) -> Result<Reading, Failure> {
    let request = client
        .request(reqwest::Method::GET, "/api/v2/tokens/me")?
        .build()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let response = crate::send_within_deadline(client, request)
        .await
        .map_err(|e| crate::failure_of(client, e))?;
    let status = response.status();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let snapshot = parse_rate_limit(&pairs[..], None);
    let reading = snapshot.and_then(|s| {
        let limit = s.limit?;
        Some(Reading {
            count: limit.saturating_sub(s.remaining?),
            limit,
            reset: Duration::from_millis(s.reset_after.map_or(0, |d| d.as_millis())),
        })
    });
    match reading {
        Some(r) => {
            outln!(
                "        token {label}: HTTP {}, count {} of {}, reset in {} s",
                status.as_u16(),
                r.count,
                r.limit,
                r.reset.as_secs()
            );
            Ok(r)
        }
        None => Err(Failure {
            code: 1,
            message: format!(
                "GET /api/v2/tokens/me with token {label} (HTTP {}) carried no rate-limit \
                 headers to compare",
                status.as_u16()
            ),
        }),
    }
}

/// Runs the probe and prints its answer. Two clients, two tokens: the second is requested only
/// for this comparison.
pub(crate) async fn run(target: &TargetArgs) -> Result<(), Failure> {
    outln!("rate-limit scope (two tokens side by side, GET /api/v2/tokens/me):");
    let a = Client::new(build_config(target)?)?;
    let b = Client::new(build_config(target)?)?;
    let ta = a.token().await.map_err(|e| crate::failure_of(&a, e))?;
    let tb = b.token().await.map_err(|e| crate::failure_of(&b, e))?;
    if ta.fingerprint() == tb.fingerprint() {
        return Err(Failure {
            code: 1,
            message: "the token endpoint handed out the same token twice: the scope cannot be \
                      told apart this way"
                .to_owned(),
        });
    }
    let a1 = read(&a, "A").await?;
    let a2 = read(&a, "A").await?;
    let b1 = read(&b, "B").await?;
    let a3 = read(&a, "A").await?;
    let (verdict, how_sure) = judge(a1, a2, b1, a3);
    let (headline, consequences): (&str, &[&str]) = match verdict {
        Verdict::PerToken => (
            "ok    rate limit counted per access token: each token has its own budget",
            &[
                "a fleet sharing one token shares one budget; pods with their own tokens have one",
                "each (README, \"Running a fleet\"); credflow's pacer starts a new token's window",
                "afresh (set RateLimitScope::Token to skip detecting it)",
            ],
        ),
        Verdict::PerClient => (
            "ok    rate limit counted per client id: every token of this client shares one budget",
            &[
                "sharing one token across a fleet costs no budget; credflow's pacer carries the",
                "window over a token change (set RateLimitScope::Client to skip detecting it)",
            ],
        ),
        Verdict::Unclear => ("??    rate limit scope: could not tell", &[]),
    };
    outln!("  {headline}");
    for line in consequences {
        outln!("        {line}");
    }
    outln!("        {how_sure}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(count: u64, reset: u64) -> Reading {
        Reading { count, limit: 300, reset: Duration::from_secs(reset) }
    }

    #[test]
    fn judges_each_scope_and_says_how_sure() {
        let per_token = judge(r(5, 50), r(6, 50), r(1, 60), r(7, 49));
        assert_eq!(per_token, (Verdict::PerToken, per_token.1));
        assert!(per_token.1.starts_with("sure"));
        let per_client = judge(r(5, 50), r(6, 50), r(7, 50), r(8, 49));
        assert_eq!(per_client.0, Verdict::PerClient);
        assert!(per_client.1.starts_with("sure"));
        // Others' traffic in between: still one count, less sure.
        let busy = judge(r(5, 50), r(9, 50), r(14, 50), r(20, 49));
        assert_eq!(busy.0, Verdict::PerClient);
        assert!(busy.1.starts_with("fairly"));
        let busy_token = judge(r(5, 50), r(6, 50), r(2, 60), r(9, 49));
        assert_eq!(busy_token.0, Verdict::PerToken);
        assert!(busy_token.1.starts_with("fairly"));
        // A's window rolled over: no verdict.
        assert_eq!(judge(r(299, 1), r(300, 1), r(1, 60), r(1, 60)).0, Verdict::Unclear);
        assert_eq!(judge(r(5, 50), r(6, 50), r(6, 50), r(6, 50)).0, Verdict::Unclear);
    }
}
