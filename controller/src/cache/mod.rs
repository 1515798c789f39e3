//! The controller's own cache of the VictoriaMetrics children, filled by their watches. It keeps
//! each child trimmed and compressed (thousands of children fit in a few MB) and knows which
//! `VMDistributed` objects each child concerns.
//!
//! - [`watches`]: the four child watches, the caches they fill, and which CRs a child event wakes;
//! - [`kind_cache`]: the cache of one kind, keyed by namespace and name;
//! - [`child`]: a child as the watch decodes it and as the cache keeps it;
//! - [`compact_json`]: the compressed form of a cached child;
//! - [`name_index`]: which CRs resolve which child names, from the CR watch.

pub mod child;
pub mod compact_json;
pub mod kind_cache;
pub mod name_index;
pub mod watches;
