//! How full the eBPF programs' hash maps are, read when `/metrics` is
//! scraped (`airlock_ebpf_map_entries`, `airlock_ebpf_map_capacity`;
//! docs/metrics.md says what each map holds and what a full one means).
//!
//! The kernel keeps no element count a daemon can ask for, so a reading
//! walks the keys (`BPF_MAP_GET_NEXT_KEY`, one syscall per entry): on the
//! scraper's time, never the programs' or the request path's. A walk is
//! bounded by the map's capacity. It is approximate while programs change
//! the map: a key removed under the walk (getsockopt takes a connection's
//! record as it answers) sends the kernel back to the first key, so an
//! entry can be counted twice; the cap keeps that from running away.
//!
//! The handles are opened from the pins once, when the programs are
//! loaded or adopted: the same kernel objects the programs write, held
//! open as long as the daemon runs even if someone removes the pins.
//! The `AIRLOCK_CONFIG` array (always one entry of one) and the two ring
//! buffers (bytes, not entries) are not reported.

use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, Map, MapData, MapError, PerCpuHashMap};
use gateway_common::{
    EventWindow, MAP_BY_COOKIE, MAP_BY_TUPLE, MAP_EVENT_RATE, MAP_NETNS, MAP_PORTS, OrigInfo,
    TupleKey,
};

/// Counts at most `cap` keys of `map`.
type Walk = fn(&Map, usize) -> Result<u64, MapError>;

/// The maps reported, each with the key and value types it is walked as
/// (aya checks their sizes against the kernel's before the walk).
const WATCHED: [(&str, Walk); 5] = [
    (MAP_PORTS, walk_hash::<u16, u8>),
    (MAP_BY_COOKIE, walk_hash::<u64, OrigInfo>),
    (MAP_BY_TUPLE, walk_hash::<TupleKey, OrigInfo>),
    (MAP_NETNS, walk_hash::<u64, u8>),
    (MAP_EVENT_RATE, walk_per_cpu::<u64, EventWindow>),
];

/// One map's reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// The map's name (a `gateway_common::MAP_*`).
    pub map: &'static str,
    /// The keys it holds now (at most `capacity`).
    pub entries: u64,
    /// Its `max_entries`, as the kernel created it.
    pub capacity: u32,
}

/// Open handles on the reported maps.
pub struct MapOccupancy {
    maps: Vec<Watched>,
}

struct Watched {
    name: &'static str,
    map: Map,
    capacity: u32,
    walk: Walk,
}

impl MapOccupancy {
    /// Opens the reported maps pinned under `pin_dir`. `Err` names the map
    /// that could not be opened.
    pub fn open(pin_dir: &Path) -> Result<MapOccupancy, (&'static str, MapError)> {
        let mut maps = Vec::with_capacity(WATCHED.len());
        for (name, walk) in WATCHED {
            let opened = MapData::from_pin(pin_dir.join(name)).and_then(|data| {
                let capacity = data.info()?.max_entries();
                Ok((Map::from_map_data(data)?, capacity))
            });
            let (map, capacity) = opened.map_err(|e| (name, e))?;
            maps.push(Watched {
                name,
                map,
                capacity,
                walk,
            });
        }
        Ok(MapOccupancy { maps })
    }

    /// Every map's reading; a map that cannot be read now is left out
    /// (and logged), the others are still reported. Blocking: one syscall
    /// per entry.
    pub fn read(&self) -> Vec<Fill> {
        self.maps
            .iter()
            .filter_map(|w| match (w.walk)(&w.map, w.capacity as usize) {
                Ok(entries) => Some(Fill {
                    map: w.name,
                    entries,
                    capacity: w.capacity,
                }),
                Err(error) => {
                    tracing::warn!(map = w.name, %error, "/metrics: cannot count an eBPF map's entries");
                    None
                }
            })
            .collect()
    }
}

fn walk_hash<K: aya::Pod, V: aya::Pod>(map: &Map, cap: usize) -> Result<u64, MapError> {
    count(BpfHashMap::<&MapData, K, V>::try_from(map)?.keys(), cap)
}

fn walk_per_cpu<K: aya::Pod, V: aya::Pod>(map: &Map, cap: usize) -> Result<u64, MapError> {
    count(PerCpuHashMap::<&MapData, K, V>::try_from(map)?.keys(), cap)
}

/// The number of keys `keys` yields, at most `cap`.
fn count<K>(keys: impl Iterator<Item = Result<K, MapError>>, cap: usize) -> Result<u64, MapError> {
    let mut n = 0u64;
    for key in keys.take(cap) {
        key?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::count;
    use aya::maps::MapError;

    #[test]
    fn a_walk_stops_at_the_capacity() {
        // A walk the kernel keeps restarting (keys removed under it).
        let endless = std::iter::repeat_with(|| Ok::<u64, MapError>(7));
        assert_eq!(count(endless, 64).ok(), Some(64));
        assert_eq!(
            count(std::iter::empty::<Result<u64, _>>(), 64).ok(),
            Some(0)
        );
    }

    #[test]
    fn a_failed_step_fails_the_reading() {
        let keys = [Ok(1u64), Err(MapError::KeyNotFound), Ok(2)];
        assert!(count(keys.into_iter(), 64).is_err());
    }
}
