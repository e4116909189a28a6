//! Adding and editing rules. Both go through [`validate`], so a rule is
//! checked the same way whether it is new or changed, and whichever door
//! (CLI, API, dashboard form) it came through.

use super::types::{AddRule, RuleView};
use super::{Service, ServiceError};
use crate::model::AgentName;
use crate::policy::{BodyCondition, HostPattern, Method, PathGlob, Rate, RuleAction};
use crate::store::rules::NewRule;

/// A rule request that passed [`validate`].
struct ValidRule {
    host: HostPattern,
    path: PathGlob,
    method: Option<Method>,
    agent: Option<AgentName>,
    action: RuleAction,
    body: Option<BodyCondition>,
}

impl ValidRule {
    fn as_new(&self) -> NewRule<'_> {
        NewRule {
            host: &self.host,
            path: &self.path,
            method: self.method.as_ref(),
            agent: self.agent.as_ref(),
            action: self.action,
            body: self.body.as_ref(),
        }
    }
}

/// The one validator of a rule's fields.
fn validate(req: &AddRule) -> Result<ValidRule, ServiceError> {
    let host = HostPattern::parse(&req.host).map_err(|e| ServiceError::invalid("host", e))?;
    let path = PathGlob::parse(req.path.as_deref().unwrap_or(PathGlob::ANY))
        .map_err(|e| ServiceError::invalid("path", e))?;
    let method = req
        .method
        .as_deref()
        .map(Method::parse)
        .transpose()
        .map_err(|e| ServiceError::invalid("method", e))?;
    let agent = req
        .agent
        .as_deref()
        .map(AgentName::parse)
        .transpose()
        .map_err(|e| ServiceError::invalid("agent", e))?;
    if let RuleAction::Rate(rate) = req.action {
        // Re-parse through the one rate validator so the API cannot store
        // what the CLI would refuse.
        Rate::parse(&rate.to_string()).map_err(|e| ServiceError::invalid("rate", e))?;
    }
    let body = req
        .body
        .as_ref()
        .map(BodyCondition::parse)
        .transpose()
        .map_err(|e| ServiceError::invalid("body", e))?;
    Ok(ValidRule {
        host,
        path,
        method,
        agent,
        action: req.action,
        body,
    })
}

impl Service {
    pub async fn add_rule(&self, req: AddRule) -> Result<RuleView, ServiceError> {
        let rule = validate(&req)?;
        let id = self.store.insert_rule(rule.as_new()).await?;
        self.refresh().await;
        self.rule_view(id).await
    }

    /// Replaces rule `id`'s host, path, method, agent and action; its id
    /// and position stay, so the order of rules is unchanged.
    pub async fn update_rule(&self, id: i64, req: AddRule) -> Result<RuleView, ServiceError> {
        let rule = validate(&req)?;
        self.store.update_rule(id, rule.as_new()).await?;
        self.refresh().await;
        self.rule_view(id).await
    }

    async fn rule_view(&self, id: i64) -> Result<RuleView, ServiceError> {
        self.store
            .list_rules()
            .await?
            .iter()
            .find(|r| r.id == id)
            .map(RuleView::from)
            .ok_or_else(|| ServiceError::NotFound(format!("rule {id} does not exist")))
    }
}
