//! The in-memory configuration the request path reads.
//!
//! The gateway never waits on the database: it reads an immutable
//! [`Snapshot`] of agents, secrets (still sealed) and rules through an
//! `ArcSwap`, replaced whole after every change. Readers never block and
//! never see half a change.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use crate::model::AgentName;
use crate::policy::{AgentDefault, Defaults};
use crate::store::agents::AgentRecord;
use crate::store::rules::RuleRecord;
use crate::store::secrets::SecretRecord;
use crate::store::{Loaded, Store, StoreError};
use crate::token::TokenHash;

/// One consistent view of the configuration.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with each reload; tells a reader whether it is current.
    pub generation: u64,
    /// When it was built, for `airlock status`; `None` only for the empty
    /// snapshot a handle starts with.
    pub loaded_at: Option<DateTime<Utc>>,
    /// Who may use the gateway, each with the secrets it is granted.
    pub agents: Vec<AgentRecord>,
    /// The credentials, still sealed: a value is opened only when a
    /// request it applies to is injected, so the snapshot never holds
    /// plaintext.
    pub secrets: Vec<SecretRecord>,
    /// The policy, in position order: any matching block wins, else the
    /// first matching approval and rate limit apply (`policy::engine`).
    pub rules: Vec<RuleRecord>,
    /// The global default and whether grants allow under deny; each
    /// agent's own default is on its record ([`Snapshot::default_for`]).
    pub defaults: Defaults,
    /// Rows that could not be read, described. A corrupt agent or secret
    /// is left out (it cannot authenticate or be injected: safe); a corrupt
    /// rule might be a block rule, so its presence fails the gateway closed
    /// (see [`Snapshot::policy_intact`]).
    pub corrupt: Vec<String>,
    /// Whether any of `corrupt` is a rule or the default: what [`Snapshot::policy_intact`]
    /// answers, kept apart so it is not re-derived per request.
    corrupt_rules: bool,
    /// Index into `agents` by proxy-token hash: how a `CONNECT` finds its
    /// agent without scanning.
    by_token: HashMap<TokenHash, usize>,
    /// Index into `agents` by name: how each request re-checks that its
    /// session's agent still exists.
    by_name: HashMap<AgentName, usize>,
}

impl Snapshot {
    /// Generation 0: [`SnapshotHandle::install`] gives it its own.
    fn build(
        agents: Loaded<AgentRecord>,
        secrets: Loaded<SecretRecord>,
        rules: Loaded<RuleRecord>,
        defaults: Result<Defaults, StoreError>,
    ) -> Self {
        // An unreadable default might be a deny: like a corrupt rule, it
        // fails the gateway closed.
        let (defaults, bad_default) = match defaults {
            Ok(d) => (d, None),
            Err(e) => (Defaults::default(), Some(e.to_string())),
        };
        let corrupt_rules = !rules.corrupt.is_empty() || bad_default.is_some();
        let corrupt: Vec<String> = agents
            .corrupt
            .iter()
            .chain(&secrets.corrupt)
            .chain(&rules.corrupt)
            .map(ToString::to_string)
            .chain(bad_default)
            .collect();
        let (agents, secrets, rules) = (agents.items, secrets.items, rules.items);
        let by_token = agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.token_hash, i))
            .collect();
        let by_name = agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.clone(), i))
            .collect();
        Snapshot {
            generation: 0,
            loaded_at: Some(Utc::now()),
            agents,
            secrets,
            rules,
            defaults,
            corrupt,
            corrupt_rules,
            by_token,
            by_name,
        }
    }

    /// A snapshot of `agents`, `secrets` and `rules`, all of them readable:
    /// what a reload builds, for a gateway that has no database (the
    /// in-process tests). Its generation is set by
    /// [`SnapshotHandle::install`].
    pub fn from_records(
        agents: Vec<AgentRecord>,
        secrets: Vec<SecretRecord>,
        rules: Vec<RuleRecord>,
    ) -> Self {
        fn all<T>(items: Vec<T>) -> Loaded<T> {
            Loaded {
                items,
                corrupt: Vec::new(),
            }
        }
        Self::build(
            all(agents),
            all(secrets),
            all(rules),
            Ok(Defaults::default()),
        )
    }

    /// The same snapshot under other global defaults (the in-process
    /// tests' way to configure them).
    pub fn with_defaults(self, defaults: Defaults) -> Self {
        Snapshot { defaults, ..self }
    }

    /// The default that applies to `agent`'s requests: its own, else the
    /// global one.
    pub fn default_for(&self, agent: &AgentRecord) -> AgentDefault {
        self.defaults.for_agent(agent.default)
    }

    /// The agent whose proxy token hashes to `hash`.
    pub fn agent_by_token(&self, hash: &TokenHash) -> Option<&AgentRecord> {
        self.by_token.get(hash).map(|&i| &self.agents[i])
    }

    /// False when a rule row (or the global default) could not be read:
    /// the gateway must then refuse requests rather than enforce a policy
    /// with a rule missing.
    pub fn policy_intact(&self) -> bool {
        !self.corrupt_rules
    }

    pub fn agent_by_name(&self, name: &AgentName) -> Option<&AgentRecord> {
        self.by_name.get(name).map(|&i| &self.agents[i])
    }
}

/// The current snapshot, and the means to replace it.
#[derive(Debug, Default)]
pub struct SnapshotHandle {
    /// What readers load: swapped whole, never changed in place, so a
    /// request sees one configuration from start to end.
    current: ArcSwap<Snapshot>,
    /// The last generation handed out, so each swap gets a higher one.
    generation: AtomicU64,
    /// When the current snapshot was installed (ms since the Unix epoch),
    /// for `/metrics`.
    installed_ms: AtomicU64,
    /// Serialises reloads so a slow, older read never replaces a newer one.
    /// Held across the database reads; the request path never takes it.
    reload_lock: tokio::sync::Mutex<()>,
}

impl SnapshotHandle {
    /// The current snapshot: a lock-free pointer load.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Reads the whole configuration and swaps it in.
    pub async fn reload(&self, store: &Store) -> Result<u64, StoreError> {
        let _serial = self.reload_lock.lock().await;
        let (agents, secrets, rules, defaults) = tokio::try_join!(
            store.load_agents(),
            store.load_secrets(),
            store.load_rules(),
            // A corrupt default is kept as an error (the policy's state);
            // only a database failure fails the reload.
            async {
                match store.load_defaults().await {
                    Err(e @ StoreError::Corrupt { .. }) => Ok(Err(e)),
                    other => other.map(Ok),
                }
            }
        )?;
        for problem in agents
            .corrupt
            .iter()
            .chain(&secrets.corrupt)
            .chain(&rules.corrupt)
            .chain(defaults.as_ref().err())
        {
            tracing::error!(error = %problem, "a configuration row cannot be read; fix or remove it");
        }
        let generation = self.install(Snapshot::build(agents, secrets, rules, defaults));
        tracing::debug!(generation, "configuration snapshot reloaded");
        Ok(generation)
    }

    /// Swaps in `snapshot` under the next generation and returns it. A
    /// reload ends here; a gateway without a database (the in-process
    /// tests) configures itself with it directly, never alongside reloads.
    pub fn install(&self, snapshot: Snapshot) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.current.store(Arc::new(Snapshot {
            generation,
            ..snapshot
        }));
        self.installed_ms.store(unix_ms(), Ordering::Relaxed);
        generation
    }

    /// How long the current snapshot has been in place.
    pub fn age(&self) -> std::time::Duration {
        let installed = self.installed_ms.load(Ordering::Relaxed);
        std::time::Duration::from_millis(unix_ms().saturating_sub(installed))
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
