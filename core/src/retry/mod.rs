//! Retry decisions, split as tower splits them: *whether* ([`policy`]), *when* ([`backoff`]),
//! and *how much overall* ([`budget`]).

pub mod backoff;
pub mod budget;
pub mod policy;
