//! The Lua scripts: every decision that several processes race for runs atomically in Redis, on
//! Redis's clock (`TIME`), so that process clocks never disagree about a window.
//!
//! The rate-limit scripts mirror the core's [`Pacer`](credflow_core::ratelimit::pacer::Pacer)
//! for a whole fleet: the same window reconciliation, GCRA spacing with a burst, and the reserve
//! by priority that shrinks to zero at the reset. Times are integer milliseconds.

/// Takes the lease if the token is still the value the caller judged unusable.
/// KEYS: token, lease. ARGV: value seen ("" for none) as far as it was read, fence, lease ms,
/// the last index read (`GETRANGE`'s end: a value longer than credflow writes is compared by
/// the part the caller read of it).
/// Returns `{code, pttl}`: 0 the token changed (look again), 1 taken, 2 held by another.
pub(crate) const ACQUIRE: &str = r"
local current = redis.call('GETRANGE', KEYS[1], 0, ARGV[4])
if current ~= ARGV[1] then return {0, 0} end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {1, 0} end
return {2, redis.call('PTTL', KEYS[2])}
";

/// Publishes a token under a lease still held, and releases the lease.
/// KEYS: token, lease. ARGV: fence, value, time to live ms. Returns 1 if published.
pub(crate) const PUBLISH: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
";

/// Releases a lease only if the caller still holds it (compare and delete).
/// KEYS: lease. ARGV: fence. Returns 1 if released.
pub(crate) const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Redis's clock, in milliseconds: `now`.
const CLOCK: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// `bound_hold(cap)`: the fleet's 429 hold (`blocked`, read from the rate hash) is never more
/// than `cap` ms from now (the longest wait a pod honours on a server's word, its retry policy's
/// `max_wait`: pods write no longer holds). A longer one (year 2500, say) was written by
/// something else: it is cut to `cap` in the hash, so that it ends, and the function answers
/// how far it reached (capped at 10^15 ms, as are values that are not numbers), 0 when it was
/// within bounds.
const BOUND_HOLD: &str = r"
local function bound_hold(cap)
  if blocked <= now + cap then return 0 end
  local reached = blocked - now
  if not (reached < 1e15) then reached = 1e15 end
  blocked = now + cap
  redis.call('HSET', KEYS[1], 'blocked_until', blocked)
  return reached
end
";

/// The fleet's 429 hold, read on Redis's clock, bounded as [`BOUND_HOLD`] says (the only write).
/// KEYS: rate. ARGV: longest hold ms. Returns `{hold left ms (0 when none), reached}`, `reached`
/// as `bound_hold` answers it.
pub(crate) fn hold() -> String {
    format!("{CLOCK}{HOLD_READ}{BOUND_HOLD}{HOLD_BODY}")
}

const HOLD_READ: &str = r"
local blocked = tonumber(redis.call('HMGET', KEYS[1], 'blocked_until')[1] or '0') or 0
";

const HOLD_BODY: &str = r"
local reached = bound_hold(tonumber(ARGV[1]))
if blocked > now then return {blocked - now, reached} end
return {0, reached}
";

/// Shared prelude: Redis time in ms, the window hash, rolling it over at the reset, and
/// [`BOUND_HOLD`].
///
/// Whenever a script writes the hash, its time to live covers the window (twice its length, and
/// at least to its reset) and the 429 hold (`blocked_until`), plus a minute: a later save with
/// a short window must not let a fleet-wide `Retry-After` vanish with the key. Spans sent
/// here are clamped to 7 days, so these sums stay exact in Lua's doubles.
fn prelude() -> String {
    format!("{CLOCK}{PRELUDE}{BOUND_HOLD}")
}

const PRELUDE: &str = r"
local h = redis.call('HMGET', KEYS[1], 'limit', 'remaining', 'reset_at', 'length', 'tat', 'interval', 'blocked_until', 'seen')
local blocked = tonumber(h[7] or '0') or 0
-- Reserved slots not yet due (KEYS[2], a sorted set by slot): counted in the window here,
-- not yet sent, so not in the server's remaining.
local function pending()
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  return redis.call('ZCARD', KEYS[2])
end
local w = nil
if h[1] and h[2] and h[3] and h[4] then
  w = { limit = tonumber(h[1]), remaining = tonumber(h[2]), reset_at = tonumber(h[3]),
        length = math.max(tonumber(h[4]), 1), tat = tonumber(h[5] or '0') or 0,
        interval = tonumber(h[6] or '0') or 0, seen = tonumber(h[8] or '0') or 0 }
  if now >= w.reset_at then
    local windows = math.floor((now - w.reset_at) / w.length) + 1
    -- Slots reserved before a reset that a later response brought forward land in this
    -- window: they count in it.
    w.remaining = math.max(math.max(w.limit, 1) - pending(), 0)
    w.reset_at = w.reset_at + w.length * windows
    w.tat = 0
    w.interval = 0
  end
end
local function save(w)
  redis.call('HSET', KEYS[1], 'limit', w.limit, 'remaining', w.remaining, 'reset_at', w.reset_at,
    'length', w.length, 'tat', w.tat, 'interval', w.interval, 'seen', w.seen)
  redis.call('PEXPIRE', KEYS[1], math.max(w.length * 2, w.reset_at - now, blocked - now) + 60000)
end
";

/// The admission script: [`prelude`] then the decision.
/// KEYS: rate, slots. ARGV: priority (0 critical, 1 normal, 2 background), critical reserve ‰,
/// background floor ‰, burst, burst ‰, horizon ms, longest hold ms. Returns
/// `{counted, wait ms, held, reached}`: `{1, 0, ..}` admitted and counted now; `{1, w, ..}`
/// counted for the slot `w` ms from now (reserved: the caller sends then without asking
/// again); `{0, w, ..}` not counted, ask again in `w` ms, `held` 1 when that wait is the
/// fleet's 429 hold (bounded by the longest hold) and 0 when it is the window's. `reached` is
/// `bound_hold`'s answer: how far a hold beyond bounds reached before it was cut.
///
/// A slot is reserved only inside the current window, with requests left in it, no 429 hold
/// in force and within the caller's horizon: a wait for the spacing or the priority reserve,
/// whose end is known. Waits for a 429's hold or the next window are not reserved (what the
/// server will allow then is not known yet), nor beyond the horizon (the caller would not be
/// waiting by then, and the slot would be lost), nor in the last second before the reset a
/// response reported (`seen`; half the window if shorter): the reset is known to a second at
/// best (Genesys sends whole seconds), and a window rolled over here without a response is a
/// guess (its length too, when the server does not state it).
pub(crate) fn admit() -> String {
    format!("{}{ADMIT_BODY}", prelude())
}

const ADMIT_BODY: &str = r"
local reached = bound_hold(tonumber(ARGV[7]))
local prio = tonumber(ARGV[1])
local horizon = tonumber(ARGV[6])
local wait = 0
if blocked > now then wait = blocked - now end
local hold = wait
if not w then
  if wait > 0 then return {0, wait, 1, reached} end
  return {1, 0, 0, reached}
end
local share_pm = 0
if prio == 1 then share_pm = tonumber(ARGV[2])
elseif prio == 2 then share_pm = math.max(tonumber(ARGV[3]), tonumber(ARGV[2])) end
share_pm = math.min(share_pm, 999)
local share = math.floor(w.limit * share_pm / 1000)
local left = math.min(w.reset_at - now, w.length)
local held = math.ceil(share * left / w.length)
if w.remaining == 0 then
  wait = math.max(wait, w.reset_at - now)
elseif w.remaining <= held then
  local x = 0
  if share > 0 then x = math.floor((w.remaining - 1) * w.length / share) end
  wait = math.max(wait, w.reset_at - x - now)
end
if prio ~= 0 then
  local burst = math.max(tonumber(ARGV[4]), 1, math.floor(w.remaining * math.min(tonumber(ARGV[5]), 999) / 1000))
  local at = math.min(w.tat - w.interval * (burst - 1), w.reset_at)
  wait = math.max(wait, at - now)
end
local edge = math.min(w.reset_at, w.seen) - math.min(1000, math.floor(w.length / 2))
if wait > 0 and (wait > horizon or blocked > now or w.remaining == 0 or now + wait >= edge) then
  local held = 0
  if hold > 0 and wait == hold then held = 1 end
  return {0, wait, held, reached}
end
local slot = now + wait
w.remaining = w.remaining - 1
w.interval = math.floor((w.reset_at - slot) / (w.remaining + 1))
if prio ~= 0 then w.tat = math.max(w.tat, slot) + w.interval end
save(w)
if wait > 0 then
  redis.call('ZADD', KEYS[2], slot, slot .. ':' .. w.remaining .. ':' .. w.reset_at)
  redis.call('PEXPIRE', KEYS[2], math.max(redis.call('PTTL', KEYS[2]), wait + 60000))
end
return {1, wait, 0, reached}
";

/// The observation script: [`prelude`] then the reconciliation. The server's `remaining` does
/// not count the reserved slots still to come: they are taken off it (the server's window may
/// have rolled over before the estimate's, and they land in the new one).
/// KEYS: rate, slots. ARGV: remaining, limit, reset after ms, window ms (each -1 when unknown),
/// default window ms.
pub(crate) fn observe() -> String {
    format!("{}{OBSERVE_BODY}", prelude())
}

const OBSERVE_BODY: &str = r"
local server = tonumber(ARGV[1])
local length = tonumber(ARGV[4])
if length < 0 then length = (w and w.length) or tonumber(ARGV[5]) end
length = math.max(length, 1)
local limit = tonumber(ARGV[2])
if limit < 0 then limit = (w and w.limit) or server end
limit = math.max(limit, server)
local after = tonumber(ARGV[3])
if after < 0 then after = length end
local reset_at = now + after
local slack = math.min(1000, math.floor(length / 2))
server = math.max(server - pending(), 0)
local n = { limit = limit, remaining = server, reset_at = reset_at, length = length, tat = 0, interval = 0,
  seen = reset_at }
-- The same window only while the reset last reported is still ahead: once it passed, the
-- window rolled over here on a guess (of its length too, when the server does not state it),
-- and this response describes the server's new window.
if w and w.seen > now and reset_at < w.reset_at + slack then
  n.remaining = math.min(w.remaining, server)
  n.tat = w.tat
  -- Resets come rounded up (whole seconds): each is an upper bound, the earliest the tightest.
  n.reset_at = math.min(w.reset_at, reset_at)
  n.seen = n.reset_at
end
n.interval = math.floor((n.reset_at - now) / (n.remaining + 1))
save(n)
return 1
";

/// The 429 script: [`prelude`] then the hold, for the `Retry-After` but never longer than the
/// longest hold (a pod honours no longer wait on a server's word, so the fleet relays none).
/// KEYS: rate, slots. ARGV: retry after ms (-1 when absent), longest hold ms. Returns
/// `bound_hold`'s answer for the hold found.
pub(crate) fn rate_limited() -> String {
    format!("{}{RATE_LIMITED_BODY}", prelude())
}

const RATE_LIMITED_BODY: &str = r"
local cap = tonumber(ARGV[2])
local reached = bound_hold(cap)
local after = tonumber(ARGV[1])
if after < 0 and w and now < w.reset_at then
  w.remaining = 0
  save(w)
  return reached
end
if after < 0 then after = 1000 end
after = math.min(after, cap)
redis.call('HSET', KEYS[1], 'blocked_until', math.max(blocked, now + after))
redis.call('PEXPIRE', KEYS[1], math.max(redis.call('PTTL', KEYS[1]), after + 60000))
return reached
";
