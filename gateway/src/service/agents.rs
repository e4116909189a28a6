//! Agents: registering them (a token or a cgroup), granting secrets,
//! and removing them, which empties and removes an Airlock-owned cgroup
//! first ([`stop_processes`]) so nothing keeps running as the agent.

use super::types::*;
use super::{Service, ServiceError};
use crate::model::{AgentName, SecretName};
use crate::store::agents::NewAgent;
use crate::token::Token;

impl Service {
    pub async fn list_agents(&self) -> Result<Vec<AgentView>, ServiceError> {
        Ok(self
            .store
            .list_agents()
            .await?
            .iter()
            .map(AgentView::from)
            .collect())
    }

    /// The cgroup Airlock creates and owns for an agent given no `--cgroup`.
    fn default_cgroup(&self, name: &AgentName) -> String {
        crate::intercept::cgroup::owned_path(&self.agents_cgroup, name)
    }

    pub async fn add_agent(&self, req: AddAgent) -> Result<AgentCreated, ServiceError> {
        let name = AgentName::parse(&req.name).map_err(|e| ServiceError::invalid("name", e))?;
        let grants = req
            .grants
            .iter()
            .map(|g| SecretName::parse(g))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServiceError::invalid("grants", e))?;
        let cgroup = match req.cgroup {
            Some(path) => validate_cgroup(&path)?,
            None => self.default_cgroup(&name),
        };
        let token = Token::generate();
        self.store
            .insert_agent(NewAgent {
                name: &name,
                token_hash: token.hash(),
                cgroup: &cgroup,
                grants: &grants,
            })
            .await?;
        self.refresh().await;
        let agent = AgentView::from(&self.store.get_agent(&name).await?);
        Ok(AgentCreated {
            agent,
            token: SecretValue::new(token.expose().to_owned()),
        })
    }

    /// Deletes the agent. Its processes must not outlive it as anyone's
    /// identity:
    ///
    /// - the cgroup Airlock owns (the default `PARENT/agent-NAME`) is
    ///   emptied, every process in it killed, and removed; if its
    ///   processes cannot be stopped the agent is not removed (an error
    ///   says why). Anything that joins it while the agent is being removed
    ///   is killed by the second pass after the row is gone; if that fails
    ///   too, the cgroup keeps the removed agent's mark and is refused as
    ///   an unknown cgroup, even once the name is added again
    ///   ([`crate::intercept::agents`]);
    /// - a `--cgroup` one belongs to systemd or a container runtime: it is
    ///   never killed or removed, and while processes are in it the removal
    ///   is refused unless `busy` is [`BusyCgroup::Keep`] (`--force`); they
    ///   are then an unknown cgroup, until an agent is added with that
    ///   `--cgroup` again, which is the operator naming them.
    pub async fn delete_agent(&self, name: &str, busy: BusyCgroup) -> Result<(), ServiceError> {
        let name = AgentName::parse(name).map_err(|e| ServiceError::invalid("name", e))?;
        let rel = self.store.get_agent(&name).await?.cgroup;
        let rel = rel.trim_matches('/').to_owned();
        let dir = crate::intercept::cgroup::Cgroup2::find()
            .ok()
            .map(|cg| cg.path(&rel));
        let owned = rel == self.default_cgroup(&name);
        if owned && let Some(dir) = &dir {
            stop_processes(&name, dir.clone()).await.map_err(|e| {
                ServiceError::Conflict(format!(
                    "cannot stop the processes of agent {name}'s cgroup {}: {e}; the agent \
                         is not removed",
                    dir.display()
                ))
            })?;
        } else if busy == BusyCgroup::Refuse
            && let Some(dir) = &dir
            && crate::intercept::cgroup::populated(dir).unwrap_or(false)
        {
            return Err(ServiceError::Conflict(format!(
                "agent {name}'s cgroup {rel} (given with --cgroup, so not Airlock's to stop) \
                 still has processes: stop them first (e.g. systemctl stop the unit), or \
                 remove the agent anyway with --force (they are then refused as an unknown \
                 cgroup, until an agent is added with this cgroup again)"
            )));
        }
        self.store.delete_agent(&name).await?;
        // After the refresh no rebuild of the agent map recreates it.
        self.refresh().await;
        if owned
            && let Some(dir) = dir
            && let Err(e) = stop_processes(&name, dir.clone()).await
        {
            tracing::warn!(agent = %name, cgroup = %dir.display(), error = %e,
                "a process joined the removed agent's cgroup and cannot be stopped: the \
                 cgroup is kept, marked as the removed agent's, and refused");
        }
        Ok(())
    }

    pub async fn grant(&self, agent: &str, secret: &str) -> Result<GrantResult, ServiceError> {
        let agent = AgentName::parse(agent).map_err(|e| ServiceError::invalid("agent", e))?;
        let secret = SecretName::parse(secret).map_err(|e| ServiceError::invalid("secret", e))?;
        let added = self.store.grant(&agent, &secret).await?;
        self.refresh().await;
        Ok(GrantResult { added })
    }

    pub async fn revoke(&self, agent: &str, secret: &str) -> Result<(), ServiceError> {
        let agent = AgentName::parse(agent).map_err(|e| ServiceError::invalid("agent", e))?;
        let secret = SecretName::parse(secret).map_err(|e| ServiceError::invalid("secret", e))?;
        self.store.revoke(&agent, &secret).await?;
        self.refresh().await;
        Ok(())
    }
}

/// A cgroup path: relative to the agents' parent cgroup, or absolute from
/// the cgroup2 root. No `..`, no empty or hidden components.
fn validate_cgroup(path: &str) -> Result<String, ServiceError> {
    let trimmed = path.trim_matches('/');
    let ok = !trimmed.is_empty()
        && path.len() <= 512
        && trimmed.split('/').all(|c| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
        });
    if ok {
        Ok(path.to_owned())
    } else {
        Err(ServiceError::invalid(
            "cgroup",
            format!(
                "cgroup {path:?} must be a path of names made of letters, digits and -_.@: \
                 (no '..' or empty parts)"
            ),
        ))
    }
}

/// Whether `agent rm` may leave processes in a `--cgroup` agent's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyCgroup {
    /// Refuse the removal while processes are in it.
    Refuse,
    /// Remove the agent anyway (`--force`); the processes stay, unknown.
    Keep,
}

/// Why an agent's cgroup could not be emptied and removed.
#[derive(Debug, thiserror::Error)]
enum StopError {
    #[error(transparent)]
    Cgroup(#[from] std::io::Error),
    /// The blocking task that waits for the processes did not finish
    /// (it panicked, or the runtime is shutting down).
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Kills the processes of the Airlock-owned agent cgroup at `dir` and
/// removes it (off the async threads: it waits for them to exit).
async fn stop_processes(agent: &AgentName, dir: std::path::PathBuf) -> Result<(), StopError> {
    use crate::intercept::cgroup::{self, Removed};
    let shown = dir.display().to_string();
    match tokio::task::spawn_blocking(move || cgroup::kill_and_remove(&dir)).await?? {
        Removed::Gone { killed } => {
            tracing::info!(%agent, cgroup = %shown, killed,
                "removed the agent's cgroup, killing the processes in it");
        }
        Removed::Absent => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_are_checked() {
        assert!(validate_cgroup("airlock.slice/agent-a").is_ok());
        assert!(validate_cgroup("/system.slice/my-agent.service").is_ok());
        for bad in ["", "/", "a/../b", "a//b", "a/.hidden", "a b"] {
            assert!(validate_cgroup(bad).is_err(), "{bad:?}");
        }
    }
}
