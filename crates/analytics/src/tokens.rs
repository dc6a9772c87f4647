//! Token counts in Apogee's canonical convention, and the normalisation of each provider's
//! way of reporting prompt caching into it.
//!
//! Canonical (what is stored): `input_tokens` counts every prompt token, including the ones
//! read from the provider's cache (`cached_input_tokens`) and the ones written to it
//! (`cache_creation_input_tokens`); both are subsets of `input_tokens`. `reasoning_tokens` are
//! a subset of `output_tokens`. This is how OpenAI reports usage. Anthropic reports
//! `input_tokens` *excluding* cache reads and cache writes, so its counts are added up before
//! they are stored — otherwise cached traffic looks cheaper (or pricier) than it was.

use serde::{Deserialize, Serialize};

/// How a source counts cached prompt tokens relative to `input_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheConvention {
    /// `input_tokens` already contains cache reads and writes (OpenAI, OpenTelemetry GenAI,
    /// LiteLLM; Apogee's canonical form).
    #[serde(alias = "openai")]
    IncludesCache,
    /// `input_tokens` leaves out cache reads and writes (Anthropic's Messages API).
    #[serde(alias = "anthropic")]
    ExcludesCache,
}

impl CacheConvention {
    /// The convention of a provider's own API response `usage` object.
    pub fn of_provider(provider: &str) -> CacheConvention {
        if provider.eq_ignore_ascii_case("anthropic") {
            CacheConvention::ExcludesCache
        } else {
            CacheConvention::IncludesCache
        }
    }

    /// The canonical `input_tokens` for counts reported in this convention; `None` when the
    /// counts contradict it (cache above the input that should contain it) or overflow.
    pub fn canonical_input(
        self,
        reported_input: i64,
        cache_read: i64,
        cache_write: i64,
    ) -> Option<i64> {
        match self {
            CacheConvention::IncludesCache => {
                let cached = cache_read.checked_add(cache_write)?;
                (cached <= reported_input).then_some(reported_input)
            }
            CacheConvention::ExcludesCache => reported_input
                .checked_add(cache_read)?
                .checked_add(cache_write),
        }
    }
}

/// The token split of one call (or a sum of calls), canonical convention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// All prompt tokens, cache reads and writes included.
    pub input: i64,
    pub cache_read: i64,
    pub cache_write: i64,
    /// The part of `cache_write` written with a 1-hour TTL (Anthropic bills it higher).
    pub cache_write_1h: i64,
    /// All output tokens, reasoning included.
    pub output: i64,
}

impl TokenCounts {
    /// Prompt tokens neither read from nor written to the cache.
    pub fn fresh_input(&self) -> i64 {
        self.input - self.cache_read - self.cache_write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_counts_are_already_canonical() {
        // OpenAI: prompt_tokens 1200 with prompt_tokens_details.cached_tokens 1000.
        let c = CacheConvention::of_provider("openai");
        assert_eq!(c.canonical_input(1200, 1000, 0), Some(1200));
        // 1000 cached cannot sit inside 800 prompt tokens.
        assert_eq!(c.canonical_input(800, 1000, 0), None);
    }

    #[test]
    fn anthropic_counts_add_cache_reads_and_writes() {
        // Anthropic: input_tokens 50 (after the last cache breakpoint), cache_read 1000,
        // cache_creation 150: the prompt had 50 + 1000 + 150 = 1200 tokens.
        let c = CacheConvention::of_provider("Anthropic");
        assert_eq!(c, CacheConvention::ExcludesCache);
        assert_eq!(c.canonical_input(50, 1000, 150), Some(1200));
        assert_eq!(c.canonical_input(i64::MAX, 1, 0), None);
        let t = TokenCounts {
            input: 1200,
            cache_read: 1000,
            cache_write: 150,
            cache_write_1h: 0,
            output: 10,
        };
        assert_eq!(t.fresh_input(), 50);
    }
}
