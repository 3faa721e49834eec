//! What the fleet shares: one token and one rate budget (the default), or one token and one
//! budget per pod with refreshes taken in turn ([`TokenSharing`]).

use std::fmt;

use credflow_reqwest::shared::FleetScope;

/// Whether the pods of a fleet share one token, or each keeps its own.
///
/// The choice follows what the API counts its rate limit per, which for Genesys Cloud is
/// disputed (per token or per client id; `credflow check --rate-limit-scope` tells which one an
/// organisation sees, and the README's "Running a fleet" has the numbers):
///
/// | | [`Fleet`](TokenSharing::Fleet) (default) | [`PerPod`](TokenSharing::PerPod) |
/// |---|---|---|
/// | tokens | one for the fleet | one per pod |
/// | token requests | one per refresh for the fleet | one per refresh per pod, one at a time across the fleet |
/// | rate budget, API counting per client id | the client's, shared and paced across the fleet | the client's, each pod pacing alone: 429s near each window's end, as independent pods |
/// | rate budget, API counting per token | one token's, for the whole fleet | one token's per pod |
///
/// So `Fleet` is right when the API counts per client id (no budget to gain, fewer token
/// requests, no 429s), and `PerPod` when it counts per token and the fleet needs more than one
/// token's budget: each pod then gets one budget, at the price of one token request per pod
/// per token life (taken in turn under the fleet's lease, so a fleet that starts together
/// does not burst into the token endpoint's own limit) and no pacing shared across pods (each
/// pod's window is its own token's, which is what the server counts). Nothing takes more tokens
/// than pods: one token per pod is what independent pods would hold anyway.
///
/// Under `PerPod` the keys of a pod are `{prefix}:{<client id>|<token url>}:pod:<name>:token`
/// (`…:rate`, `…:slots`), and the lease stays the fleet's (`…:lease`): at most one token
/// request in flight across the fleet. A pod restarted under the same name takes back its
/// token; two pods given the same name share one token and one budget between them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TokenSharing {
    /// One token and one rate budget for every pod (single-flight refresh, shared pacing).
    #[default]
    Fleet,
    /// Each pod its own token and its own rate budget, named by the pod; refreshes take turns
    /// under the fleet's lease.
    PerPod(PodName),
}

/// A pod's name under [`TokenSharing::PerPod`]: 1 to 64 bytes of ASCII letters, digits, `-`,
/// `_` and `.` (a Kubernetes pod name or a host name fits; braces, which Redis Cluster reads as
/// a hash tag, and `:`, which separates key parts, do not).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PodName(String);

impl PodName {
    /// Checks `name`.
    ///
    /// # Errors
    /// [`BadPodName`] when it is empty, longer than 64 bytes, or has other characters.
    pub fn new(name: impl Into<String>) -> Result<Self, BadPodName> {
        let name = name.into();
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if name.is_empty() || name.len() > 64 || !name.bytes().all(allowed) {
            return Err(BadPodName);
        }
        Ok(PodName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A pod name that [`PodName::new`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadPodName;

impl fmt::Display for BadPodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "pod name: use 1 to 64 ASCII letters, digits, '-', '_' or '.' (e.g. the pod's \
             HOSTNAME)",
        )
    }
}

impl std::error::Error for BadPodName {}

/// The four key names of `scope` under `sharing`: token, lease, rate, slots.
pub(crate) fn key_names(prefix: &str, sharing: &TokenSharing, scope: &FleetScope) -> [String; 4] {
    let base = format!("{prefix}:{{{}|{}}}", scope.client_id, scope.token_url);
    let own = match sharing {
        TokenSharing::Fleet => base.clone(),
        TokenSharing::PerPod(pod) => format!("{base}:pod:{}", pod.as_str()),
    };
    [format!("{own}:token"), format!("{base}:lease"), format!("{own}:rate"), format!("{own}:slots")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_checked() {
        for good in ["api-7d9f-x2", "host.example", "a", &"p".repeat(64)] {
            assert_eq!(PodName::new(good).map(|p| p.as_str().to_owned()), Ok(good.to_owned()));
        }
        for bad in ["", "a:b", "{tag}", "a b", "é", &"p".repeat(65)] {
            assert_eq!(PodName::new(bad), Err(BadPodName), "{bad:?}");
        }
    }
}
