//! cgroup id → agent, kept current with the configuration snapshot.
//!
//! The eBPF record names the connecting task's agent cgroup by id (the
//! inode number of its directory). This map is rebuilt whenever the
//! snapshot's generation changes (polled every 200 ms, and on a lookup
//! miss), and creates the cgroups of agents whose path lies under the
//! agents' parent, so `airlock agent add` is enough to make one usable.
//!
//! The eBPF programs report the agent-level ancestor of the connecting
//! task's cgroup; the nftables fallback reports the socket's own cgroup,
//! which may be a sub-cgroup an agent made (`agent-NAME/worker`). An id
//! not in the table is therefore named by the kernel
//! ([`Cgroup2::rel_path_of_id`]) and its path walked up to the nearest
//! agent's cgroup; the answer is cached until the next rebuild.
//!
//! # Identity is a cgroup, not a path
//!
//! An agent's cgroup Airlock owns (`PARENT/agent-NAME`) is marked with the
//! agent's id ([`cgroup::OWNER_XATTR`]), and ids are new on every `agent
//! add`. A rebuild maps such a cgroup to its agent only if it carries that
//! agent's mark, or no mark (just made, by the daemon or `airlock run`),
//! or another mark while it is empty (nothing to hand over); it is then
//! marked for the agent. A populated cgroup marked for another id holds a
//! removed agent's survivors (`agent rm` kills them, so this is a host that
//! missed the removal or a kill that failed): it is not the agent, and its
//! connections are refused as an unknown cgroup. A `--cgroup` one belongs
//! to systemd or a container runtime, which recreate it at will: it is
//! identified by its path, as the operator said.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::cgroup::{self, Cgroup2};
use crate::model::AgentName;
use crate::model::net::CgroupId;
use crate::shutdown::Shutdown;
use crate::snapshot::SnapshotHandle;

const POLL: Duration = Duration::from_millis(200);
/// A lookup miss rebuilds the map at most this often.
const MISS_REBUILD: Duration = Duration::from_millis(100);
/// Sub-cgroup ids remembered between rebuilds (then forgotten at once).
const MAX_DESCENDANTS: usize = 4096;

#[derive(Default)]
struct Table {
    /// The snapshot generation the table was built from; `None` before
    /// the first build. A lookup that sees a newer one rebuilds first.
    generation: Option<u64>,
    /// Each agent's own cgroup: the answer to most lookups.
    by_id: HashMap<CgroupId, AgentName>,
    /// Agents' cgroups, relative to the mount, with the id each had when
    /// it was checked (a directory recreated since is not the agent's).
    by_path: HashMap<String, (AgentName, CgroupId)>,
    /// Sub-cgroups of agents' cgroups met since the last rebuild.
    descendants: HashMap<CgroupId, AgentName>,
}

/// The current cgroup id → agent table.
pub struct AgentMap {
    /// The cgroup2 mount: agents' cgroup paths are relative to it, and an
    /// unknown id is named through it.
    cg: Cgroup2,
    /// The agents' parent cgroup (relative to the mount): only cgroups
    /// under it are created, and only ids under it can name an agent.
    parent: String,
    /// The agents and their cgroups come from the configuration snapshot.
    snapshot: Arc<SnapshotHandle>,
    /// Read by every transparent connection, written by rebuilds.
    table: RwLock<Table>,
    /// When a lookup miss last rebuilt the table: misses rebuild at most
    /// every [`MISS_REBUILD`], so unknown cgroups cannot make every
    /// connection walk the whole configuration.
    last_rebuild: Mutex<Option<Instant>>,
    /// The problems already logged (per cgroup and agent id), so a rebuild
    /// every 200 ms does not repeat the same warning.
    warned: Mutex<HashSet<String>>,
}

impl AgentMap {
    /// `parent` is the agents' parent cgroup, relative to the mount.
    pub fn new(cg: Cgroup2, parent: &str, snapshot: Arc<SnapshotHandle>) -> Arc<AgentMap> {
        let map = Arc::new(AgentMap {
            cg,
            parent: cgroup::normalize(parent),
            snapshot,
            table: RwLock::default(),
            last_rebuild: Mutex::default(),
            warned: Mutex::default(),
        });
        map.rebuild();
        map
    }

    /// The agent whose cgroup has this id, if any.
    pub fn lookup(&self, cgroup_id: CgroupId) -> Option<AgentName> {
        if self.current_generation() != self.snapshot.load().generation {
            self.rebuild();
        }
        {
            let table = self.read();
            if let Some(a) = table
                .by_id
                .get(&cgroup_id)
                .or_else(|| table.descendants.get(&cgroup_id))
            {
                return Some(a.clone());
            }
        }
        if let Some(a) = self.by_ancestry(cgroup_id) {
            return Some(a);
        }
        // A cgroup recreated since the last rebuild has a new id.
        let due = {
            let mut last = self.last_rebuild.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= MISS_REBUILD);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            self.rebuild();
            return self.read().by_id.get(&cgroup_id).cloned();
        }
        None
    }

    /// The agent whose cgroup contains the cgroup `cgroup_id` (or is it,
    /// recreated under a new id), remembered until the next rebuild.
    fn by_ancestry(&self, cgroup_id: CgroupId) -> Option<AgentName> {
        let rel = self.cg.rel_path_of_id(cgroup_id.get()).ok()?;
        if !cgroup::is_under(&rel, &self.parent) {
            return None;
        }
        let (agent, path, id) = {
            let table = self.read();
            let mut path = rel.as_str();
            loop {
                if let Some((a, id)) = table.by_path.get(path) {
                    break (a.clone(), path.to_owned(), *id);
                }
                path = path.rsplit_once('/')?.0;
            }
        };
        // The ancestor found by name must still be the directory checked.
        if cgroup::id(&self.cg.path(&path)).ok().map(CgroupId::new) != Some(id) {
            return None;
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        if table.descendants.len() >= MAX_DESCENDANTS {
            table.descendants.clear();
        }
        table.descendants.insert(cgroup_id, agent.clone());
        Some(agent)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn current_generation(&self) -> u64 {
        self.read().generation.unwrap_or(u64::MAX)
    }

    /// Recomputes the table from the current snapshot, creating agent
    /// cgroups under the parent that are missing.
    pub fn rebuild(&self) {
        let snap = self.snapshot.load();
        let mut by_id = HashMap::new();
        let mut by_path = HashMap::new();
        for agent in &snap.agents {
            let rel = cgroup::normalize(&agent.cgroup);
            let dir = self.cg.path(&rel);
            let warn_key = format!("{rel} {}", agent.id);
            if cgroup::is_under(&rel, &self.parent) {
                if let Err(e) = cgroup::ensure(&dir) {
                    self.warn_once(&warn_key, || {
                        tracing::warn!(agent = %agent.name, cgroup = %dir.display(), error = %e,
                            "cannot create the agent's cgroup")
                    });
                    continue;
                }
            } else {
                self.warn_once(&warn_key, || {
                    tracing::warn!(agent = %agent.name, cgroup = %rel, parent = %self.parent,
                        "the agent's cgroup is not under the agents' parent cgroup: \
                         its connections are not intercepted")
                });
            }
            if rel == cgroup::owned_path(&self.parent, &agent.name)
                && let Err(why) = claim(&dir, &agent.id.to_string())
            {
                self.warn_once(&warn_key, || {
                    tracing::warn!(agent = %agent.name, cgroup = %dir.display(), %why,
                        "the agent's cgroup is not identified as the agent: its connections \
                         are refused")
                });
                continue;
            }
            match cgroup::id(&dir).map(CgroupId::new) {
                Ok(id) => {
                    by_id.insert(id, agent.name.clone());
                    by_path.insert(rel, (agent.name.clone(), id));
                }
                Err(e) => self.warn_once(&warn_key, || {
                    tracing::warn!(agent = %agent.name, cgroup = %dir.display(), error = %e,
                        "the agent's cgroup does not exist (yet)")
                }),
            }
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        table.generation = Some(snap.generation);
        table.by_id = by_id;
        table.by_path = by_path;
        table.descendants.clear();
    }

    fn warn_once(&self, key: &str, log: impl FnOnce()) {
        // Bounded like the descendants: a warning may then repeat.
        const MAX_WARNED: usize = 4096;
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.len() >= MAX_WARNED {
            warned.clear();
        }
        if warned.insert(key.to_owned()) {
            log();
        }
    }

    /// Rebuilds on every configuration change until shutdown.
    pub async fn follow(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = shutdown.wait() => return,
            }
            if self.current_generation() != self.snapshot.load().generation {
                self.rebuild();
            }
        }
    }
}

/// Why an Airlock-owned cgroup is not (made) the agent's.
#[derive(Debug, thiserror::Error)]
enum ClaimError {
    #[error("cannot read its owner mark: {0}")]
    ReadMark(std::io::Error),
    #[error(
        "it holds processes left by a removed agent (id {owner}): `airlock agent rm` kills \
         them (then add the agent again), or kill them and remove the cgroup \
         (echo 1 > {dir}/cgroup.kill; rmdir {dir}) and it is made afresh",
        dir = .dir.display()
    )]
    Survivors {
        owner: String,
        dir: std::path::PathBuf,
    },
    #[error("cannot mark it as the agent's: {0}")]
    WriteMark(std::io::Error),
}

/// Makes the Airlock-owned cgroup at `dir` agent `id`'s, if it may be (see
/// the module docs); `Err` says why not.
fn claim(dir: &std::path::Path, id: &str) -> Result<(), ClaimError> {
    let mark = cgroup::owner_mark(dir).map_err(ClaimError::ReadMark)?;
    match mark {
        Some(m) if m == id => return Ok(()),
        Some(owner) if cgroup::populated(dir).unwrap_or(true) => {
            return Err(ClaimError::Survivors {
                owner,
                dir: dir.to_owned(),
            });
        }
        _ => {}
    }
    cgroup::set_owner_mark(dir, id).map_err(ClaimError::WriteMark)
}
