//! Partitioned projections: one busy read model shared by several workers (in one process or
//! several), each applying the events of its own share of the aggregates.
//!
//! Partition `i` of `K` owns the aggregates whose id hashes to `i` modulo `K`: the hash is
//! FNV-1a (64 bits) of the id as its event subject's last token
//! (`<namespace>.events.<aggregate_type>.<aggregate_id>`), stable across processes, versions
//! and platforms. Every partition is its own durable consumer, `<namespace>_<projection>_p<i>of<K>`
//! (an unpartitioned projection keeps `<namespace>_<projection>`), which takes the projection's
//! subjects and acks the other partitions' messages without applying them: NATS 2.9 has no
//! server-side partitioning of a stream's subjects. Since an aggregate belongs to one
//! partition, its events are applied by one consumer, in sequence order, as before.
//!
//! Each partition keeps its own watermark in `projection_partitions`; the projection's
//! horizon in `projection_positions`, the one read-your-writes waits on, moves to the lowest of
//! its partitions' (see [`super::horizon`]).

use std::collections::BTreeMap;
use std::fmt;

use anyhow::Context;

use crate::namespace::subject_token;
use crate::Namespace;

/// The most partitions a projection may have.
pub const MAX_PARTITIONS: u32 = 64;

/// Partition `index` of `count`; `count == 1` is the whole projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    index: u32,
    count: u32,
}

impl Partition {
    /// The whole projection, unpartitioned.
    pub const WHOLE: Partition = Partition { index: 0, count: 1 };

    /// Partition `index` of `count`.
    pub fn new(index: u32, count: u32) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (1..=MAX_PARTITIONS).contains(&count),
            "a projection has 1 to {MAX_PARTITIONS} partitions, not {count}"
        );
        anyhow::ensure!(
            index < count,
            "partition {index} does not exist: there are {count} (0 to {})",
            count - 1
        );
        Ok(Self { index, count })
    }

    /// This partition's number, from 0.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many partitions the projection has.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether this is the whole projection.
    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// Whether aggregate `aggregate_id` (of any type) belongs to this partition.
    pub fn owns(self, aggregate_id: &str) -> bool {
        self.owns_token(&subject_token(aggregate_id))
    }

    /// Whether the event published on `subject` belongs to this partition: its last token is
    /// the aggregate id.
    pub(crate) fn owns_subject(self, subject: &str) -> bool {
        self.is_whole() || self.owns_token(subject.rsplit('.').next().unwrap_or(subject))
    }

    fn owns_token(self, token: &str) -> bool {
        self.is_whole() || fnv1a(token.as_bytes()) % u64::from(self.count) == u64::from(self.index)
    }

    /// The durable consumer of this partition of `projection`.
    pub fn consumer_name(self, namespace: &Namespace, projection: &str) -> String {
        let whole = namespace.consumer_name(projection);
        if self.is_whole() {
            whole
        } else {
            format!("{whole}_p{}of{}", self.index, self.count)
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// FNV-1a, 64 bits: tiny, and the same everywhere (unlike the standard library's hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Which partitions of which projections a process runs (`COMMERCE_PROJECTION_PARTITIONS`):
/// `orders=2` runs both partitions of `orders` here (the other processes that run them share
/// their consumers); `orders=4:0+1` runs partitions 0 and 1 of 4 only; several entries are
/// separated by commas. A projection not named runs whole. Every process of a deployment
/// must give a projection the same number of partitions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partitioning(BTreeMap<String, Vec<Partition>>);

impl Partitioning {
    /// Parses the setting; empty means every projection whole.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut by_projection = BTreeMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, spec) = entry
                .split_once('=')
                .with_context(|| format!("`{entry}`: expected NAME=COUNT or NAME=COUNT:I+J"))?;
            let name = name.trim();
            anyhow::ensure!(
                crate::namespace::is_valid_name(name),
                "`{name}` is not a projection name"
            );
            let (count, indexes) = spec
                .split_once(':')
                .map_or((spec, None), |(c, i)| (c, Some(i)));
            let count: u32 = count
                .trim()
                .parse()
                .with_context(|| format!("`{entry}`: the partition count is not a number"))?;
            let partitions = match indexes {
                None => (0..count.max(1))
                    .map(|index| Partition::new(index, count))
                    .collect::<anyhow::Result<Vec<_>>>(),
                Some(indexes) => indexes
                    .split('+')
                    .map(|index| {
                        let index: u32 = index.trim().parse().with_context(|| {
                            format!("`{entry}`: `{index}` is not a partition number")
                        })?;
                        Partition::new(index, count)
                    })
                    .collect(),
            }
            .with_context(|| format!("`{entry}`"))?;
            let mut partitions = partitions;
            partitions.sort_unstable();
            partitions.dedup();
            anyhow::ensure!(
                by_projection.insert(name.to_owned(), partitions).is_none(),
                "`{name}` is partitioned twice"
            );
        }
        Ok(Self(by_projection))
    }

    /// The partitions of `projection` this process runs: the whole projection unless named.
    pub fn of(&self, projection: &str) -> Vec<Partition> {
        self.0
            .get(projection)
            .cloned()
            .unwrap_or_else(|| vec![Partition::WHOLE])
    }

    /// Fails when it names a projection that is not among `projections` (a typo would
    /// otherwise leave a busy read model quietly unpartitioned).
    pub fn check<'a>(&self, projections: impl IntoIterator<Item = &'a str>) -> anyhow::Result<()> {
        let known: Vec<&str> = projections.into_iter().collect();
        match self.0.keys().find(|name| !known.contains(&name.as_str())) {
            Some(unknown) => anyhow::bail!(
                "partitions of `{unknown}`, which is not a projection here (projections: {})",
                known.join(", ")
            ),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_aggregate_belongs_to_exactly_one_partition_and_always_the_same() {
        let ids: Vec<String> = (0..1000).map(|i| format!("order-{i}")).collect();
        let partitions: Vec<Partition> = (0..4).map(|i| Partition::new(i, 4).unwrap()).collect();
        let mut sizes = [0_usize; 4];
        for id in &ids {
            let owners: Vec<_> = partitions.iter().filter(|p| p.owns(id)).collect();
            assert_eq!(owners.len(), 1, "{id} belongs to {owners:?}");
            sizes[owners[0].index() as usize] += 1;
        }
        // A fair share each (250 expected), so that partitions share the work.
        assert!(sizes.iter().all(|&n| (180..=320).contains(&n)), "{sizes:?}");
        // Fixed values: the hash must never change, or a running deployment would reshuffle.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn the_subject_decides_as_the_id_does() {
        let namespace = Namespace::parse("shop").unwrap();
        for id in ["sku.with.dots", "plain", "é*>%"] {
            let subject = namespace.event_subject("inventory", id);
            for index in 0..3 {
                let partition = Partition::new(index, 3).unwrap();
                assert_eq!(partition.owns_subject(&subject), partition.owns(id), "{id}");
            }
        }
        assert!(Partition::WHOLE.owns_subject("anything"));
    }

    #[test]
    fn consumers_are_named_per_partition() {
        let namespace = Namespace::parse("shop").unwrap();
        assert_eq!(
            Partition::WHOLE.consumer_name(&namespace, "orders"),
            "shop_orders"
        );
        assert_eq!(
            Partition::new(1, 4)
                .unwrap()
                .consumer_name(&namespace, "orders"),
            "shop_orders_p1of4"
        );
    }

    #[test]
    fn the_setting_parses() {
        let parsed = Partitioning::parse("orders=2, catalog=4:0+3").unwrap();
        assert_eq!(
            parsed.of("orders"),
            vec![Partition::new(0, 2).unwrap(), Partition::new(1, 2).unwrap()]
        );
        assert_eq!(
            parsed.of("catalog"),
            vec![Partition::new(0, 4).unwrap(), Partition::new(3, 4).unwrap()]
        );
        assert_eq!(parsed.of("inventory"), vec![Partition::WHOLE]);
        assert_eq!(Partitioning::parse("").unwrap(), Partitioning::default());
        for bad in [
            "orders",
            "orders=0",
            "orders=2:2",
            "orders=x",
            "orders=65",
            "orders=2,orders=3",
            "a b=2",
        ] {
            assert!(Partitioning::parse(bad).is_err(), "{bad}");
        }
    }
}
