//! The per-user `user_message` rate shared by every node: the same token bucket as
//! [`crate::rate::TokenBucket`], kept in Redis and updated atomically by a script using
//! Redis's clock, so a user cannot multiply the rate by spreading tabs over nodes.

use std::time::{Duration, Instant};

use apogee_store::UserKey;
use tokio::sync::Mutex;

/// How long a message waits for Redis before the node-local bucket decides instead.
const TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, messages use the node-local bucket for this long without trying Redis,
/// so an unreachable Redis costs messages nothing rather than a timeout each.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// KEYS[1]: the bucket. ARGV: tokens per millisecond, capacity. Returns 0 when a token was
/// taken, otherwise the milliseconds until one is available.
const BUCKET: &str = r#"
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate) + 1000)
return wait
"#;

pub struct SharedRate {
    client: redis::Client,
    connection: Mutex<Option<redis::aio::MultiplexedConnection>>,
    /// Until when Redis is not tried again after a failure.
    resting_until: std::sync::Mutex<Option<Instant>>,
    script: redis::Script,
}

impl SharedRate {
    pub fn new(client: redis::Client) -> SharedRate {
        SharedRate {
            client,
            connection: Mutex::new(None),
            resting_until: std::sync::Mutex::new(None),
            script: redis::Script::new(BUCKET),
        }
    }

    /// `Some(Ok)` admitted, `Some(Err(wait))` over the rate, `None` when Redis did not answer.
    pub async fn admit(
        &self,
        key: &UserKey,
        per_minute: u32,
        burst: u32,
    ) -> Option<Result<(), Duration>> {
        if self.resting() {
            return None;
        }
        let Some(mut connection) = self.connection().await else {
            self.rest();
            return None;
        };
        let per_ms = f64::from(per_minute.max(1)) / 60_000.0;
        let bucket = format!(
            "apogee:rate:{}:{}:{}",
            key.org_id.len(),
            key.org_id,
            key.user_id
        );
        let mut invocation = self.script.key(bucket);
        invocation.arg(per_ms).arg(burst.max(1));
        match tokio::time::timeout(TIMEOUT, invocation.invoke_async::<u64>(&mut connection)).await {
            Ok(Ok(0)) => Some(Ok(())),
            Ok(Ok(wait_ms)) => Some(Err(Duration::from_millis(wait_ms))),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "shared rate limit unavailable; using the node's");
                *self.connection.lock().await = None;
                self.rest();
                None
            }
            Err(_) => {
                *self.connection.lock().await = None;
                self.rest();
                None
            }
        }
    }

    fn resting(&self) -> bool {
        let until = *crate::sync::lock(&self.resting_until);
        until.is_some_and(|t| Instant::now() < t)
    }

    fn rest(&self) {
        *crate::sync::lock(&self.resting_until) = Some(Instant::now() + RETRY_AFTER);
    }

    /// The shared connection, connecting if there is none. The lock is held across the
    /// connect on purpose: concurrent messages share one attempt instead of each dialing.
    async fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if slot.is_none() {
            *slot = tokio::time::timeout(TIMEOUT, self.client.get_multiplexed_async_connection())
                .await
                .ok()
                .and_then(Result::ok);
        }
        slot.clone()
    }
}
