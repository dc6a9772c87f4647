//! Cost intelligence over an organisation's LLM usage: the usage record, the price catalog,
//! the query interface a store implements for one org, and the analyses (breakdowns, savings)
//! computed from query results. Knows nothing of WebSocket, HTTP, SQL or agents.

pub mod budget;
pub mod catalog;
pub mod compare;
pub mod demo;
pub mod forecast;
pub mod formats;
pub mod memory;
pub mod model_rows;
pub mod money;
pub mod period;
pub mod queries;
pub mod query;
pub mod savings;
pub mod tokens;
pub mod trends;
pub mod usage;

pub use budget::{BudgetPeriod, BudgetState};
pub use catalog::{CatalogError, PriceCatalog, PriceEntry, PriceTier, Pricing, Quote};
pub use compare::{Comparison, GroupChange, SliceChange};
pub use memory::MemoryUsage;
pub use money::Nanos;
pub use period::Period;
pub use queries::{
    BatchCandidate, CostRow, FeatureModelCost, InputBand, LatencyRow, LatencySlice, LatencyStats,
    ModelMix, OrgUsageQueries, OutputTail, QueryError, RepeatProfile, TokenMix, TrafficProfile,
    UsageTotals,
};
pub use query::{
    Dimension, Filter, GroupTotals, Grouping, MAX_FILTER_VALUES, MAX_FILTERS, MAX_GROUPS,
    MAX_TAG_VALUES, NONE_KEY, QuerySpecError, Scope, TagCount, UsageQuery, UsageSlice, WEEKDAYS,
};
pub use tokens::{CacheConvention, TokenCounts};
pub use usage::{PricedRecord, RecordError, UsageRecord};
