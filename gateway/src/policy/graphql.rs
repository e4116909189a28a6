//! GraphQL body conditions ([`super::body`]): the operation type
//! (`query`, `mutation`, `subscription`) and the top-level fields of the
//! operation a GraphQL-over-HTTP request runs, parsed with
//! `apollo-parser`.
//!
//! What is read:
//! - **POST** `application/json`: `{"query": "...", "operationName": ...}`,
//!   or a batch (an array) of those, each element judged on its own. The
//!   JSON is read as strictly as JSON-RPC is ([`super::jsonrpc`]: no
//!   duplicate key, bounded depth and batch), so `"query"` cannot be read
//!   two ways.
//! - **GET** (or any method) with `?query=` (and `?operationName=`) in the
//!   URL. A document in the URL *and* a body is unreadable: servers differ
//!   on which they run.
//! - Anything else is unreadable and so refused by default: a body that
//!   is not JSON (`application/graphql`, multipart uploads, forms), a
//!   request with no `query` string (persisted queries by hash), a
//!   document that does not parse.
//!
//! What is judged: the operation the server runs, which is the one named
//! by `operationName`, or the only one; several without a matching name
//! is unreadable. Then each of its top-level fields, by field name, never
//! alias (`ok: deleteUser` is `deleteUser`), through fragment spreads and
//! inline fragments at the top (each fragment expanded once, so a cycle
//! or a fan-out is bounded by the document's size). Each (type, field)
//! pair is one unit, judged like one message of a batch: a block rule
//! that matches one field blocks the request, and under deny every field
//! needs an allow rule (an allowed `user` does not carry `deleteAll`
//! along). Operation names are not matched: the client chooses them
//! (`mutation Harmless { deleteAll }`).
//!
//! Bounded work: the parser stops after [`MAX_TOKENS`] tokens (whitespace
//! and commas count) or [`MAX_DEPTH`] levels of nesting, and at most
//! [`MAX_UNITS`] distinct fields are judged; past those the body is
//! unreadable ([`Unreadable::TooComplex`]). 10,000 aliases, a depth bomb
//! or a fragment fan-out is refused after that bounded work.
//!
//! Field globs are case-sensitive, as GraphQL names are: `user` and
//! `User` are different fields to a server.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use apollo_parser::{Parser, cst};
use serde_json::Value;

use super::body::{BodySpec, ConditionError, Glob, Unreadable};

/// The most tokens one document may have (whitespace and commas count).
pub const MAX_TOKENS: usize = 15_000;
/// The deepest nesting the parser follows (selection sets, values, types).
pub const MAX_DEPTH: usize = 64;
/// The most distinct (type, field) pairs one body may carry.
pub const MAX_UNITS: usize = 1_000;

/// An operation's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

impl OperationKind {
    pub fn parse(text: &str) -> Result<Self, ConditionError> {
        match text {
            "query" => Ok(OperationKind::Query),
            "mutation" => Ok(OperationKind::Mutation),
            "subscription" => Ok(OperationKind::Subscription),
            _ => Err(ConditionError::BadOperation(text.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Query => "query",
            OperationKind::Mutation => "mutation",
            OperationKind::Subscription => "subscription",
        }
    }
}

/// One unit of a GraphQL body: one top-level field of an operation it
/// runs (by name, not alias).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Operation {
    pub kind: OperationKind,
    pub field: String,
}

/// A body read as GraphQL: its units, deduplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operations {
    pub batch: bool,
    pub operations: Vec<Operation>,
}

/// A checked GraphQL condition: a type, a field glob, or both.
#[derive(Debug, Clone)]
pub struct GraphqlCondition {
    kind: Option<OperationKind>,
    field: Option<Glob>,
}

impl GraphqlCondition {
    /// The GraphQL part of `spec` (the body limit is [`super::body`]'s).
    pub fn parse(spec: &BodySpec) -> Result<Self, ConditionError> {
        let kind = spec
            .graphql_operation
            .as_deref()
            .map(OperationKind::parse)
            .transpose()?;
        let field = spec
            .graphql_field
            .as_deref()
            .map(|f| {
                if !name_glob(f) {
                    return Err(ConditionError::BadField(f.to_owned()));
                }
                Glob::parse(f, false).map_err(|_| ConditionError::BadField(f.to_owned()))
            })
            .transpose()?;
        if kind.is_none() && field.is_none() {
            return Err(ConditionError::Empty);
        }
        Ok(GraphqlCondition { kind, field })
    }

    /// Fills in the GraphQL keys of the written form.
    pub fn write(&self, spec: &mut BodySpec) {
        spec.graphql_operation = self.kind.map(|k| k.as_str().to_owned());
        spec.graphql_field = self.field.as_ref().map(|g| g.text.clone());
    }

    /// Does this one unit match?
    pub fn matches(&self, op: &Operation) -> bool {
        self.kind.is_none_or(|k| k == op.kind)
            && self.field.as_ref().is_none_or(|g| g.is_match(&op.field))
    }
}

impl fmt::Display for GraphqlCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("graphql")?;
        if let Some(k) = self.kind {
            write!(f, " {}", k.as_str())?;
        }
        if let Some(g) = &self.field {
            write!(f, " field={}", g.text)?;
        }
        Ok(())
    }
}

/// A GraphQL Name (`[_A-Za-z][_0-9A-Za-z]*`), or a glob of one: name
/// characters and the glob's own (`* ? [ ] { } , - !`), not starting
/// with a digit, at most 256 characters.
fn name_glob(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 256
        && !text.starts_with(|c: char| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_*?[]{},-!".contains(c))
}

/// Reads a GraphQL request: its body (all of it) and its URL's query
/// string. No document at all (an empty body, no `?query=`) is no units.
pub fn read(body: &[u8], url_query: Option<&str>) -> Result<Operations, Unreadable> {
    let blank = body.iter().all(u8::is_ascii_whitespace);
    let mut units = BTreeSet::new();
    let mut batch = false;
    match (url_request(url_query)?, blank) {
        (Some(_), false) => return Err(Unreadable::NotGraphql),
        (Some((query, name)), true) => operation(&query, name.as_deref(), &mut units)?,
        (None, true) => {}
        (None, false) => match super::jsonrpc::strict_value(body)? {
            Value::Array(items) => {
                batch = true;
                for item in &items {
                    let (query, name) = json_request(item)?;
                    operation(query, name, &mut units)?;
                }
            }
            one => {
                let (query, name) = json_request(&one)?;
                operation(query, name, &mut units)?;
            }
        },
    }
    Ok(Operations {
        batch,
        operations: units.into_iter().collect(),
    })
}

/// `query` and `operationName` from the URL, when it has a `query`;
/// either one twice is unreadable.
fn url_request(url_query: Option<&str>) -> Result<Option<(String, Option<String>)>, Unreadable> {
    let (mut query, mut name) = (None, None);
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(url_query.unwrap_or("")).map_err(|_| Unreadable::NotGraphql)?;
    for (key, value) in pairs {
        let slot = match key.as_str() {
            "query" => &mut query,
            "operationName" => &mut name,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(Unreadable::NotGraphql);
        }
    }
    match (query, name) {
        (Some(q), name) => Ok(Some((q, name))),
        (None, Some(_)) => Err(Unreadable::NotGraphql),
        (None, None) => Ok(None),
    }
}

/// `query` (a string) and `operationName` (a string, null or absent) of
/// one request object.
fn json_request(value: &Value) -> Result<(&str, Option<&str>), Unreadable> {
    let obj = value.as_object().ok_or(Unreadable::NotGraphql)?;
    let query = obj
        .get("query")
        .and_then(Value::as_str)
        .ok_or(Unreadable::NotGraphql)?;
    let name = match obj.get("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n.as_str()),
        Some(_) => return Err(Unreadable::NotGraphql),
    };
    Ok((query, name))
}

/// Parses `source`, chooses the operation the server runs (`name`, or
/// the only one), and adds its top-level fields to `units`.
fn operation(
    source: &str,
    name: Option<&str>,
    units: &mut BTreeSet<Operation>,
) -> Result<(), Unreadable> {
    let tree = Parser::new(source)
        .token_limit(MAX_TOKENS)
        .recursion_limit(MAX_DEPTH)
        .parse();
    if tree.errors().any(apollo_parser::Error::is_limit) {
        return Err(Unreadable::TooComplex);
    }
    if tree.errors().next().is_some() {
        return Err(Unreadable::BadDocument);
    }
    let mut operations = Vec::new();
    let mut fragments = HashMap::new();
    for definition in tree.document().definitions() {
        match definition {
            cst::Definition::OperationDefinition(op) => operations.push(op),
            cst::Definition::FragmentDefinition(f) => {
                let name = f
                    .fragment_name()
                    .and_then(|n| n.name())
                    .ok_or(Unreadable::BadDocument)?;
                // Two fragments of one name: servers refuse the document,
                // and which one a rule should read is not defined.
                if fragments
                    .insert(name.text().to_string(), f.selection_set())
                    .is_some()
                {
                    return Err(Unreadable::BadDocument);
                }
            }
            // Type definitions are not executable: a server refuses them.
            _ => return Err(Unreadable::BadDocument),
        }
    }
    let chosen = choose(operations, name)?;
    let kind = match chosen.operation_type() {
        None => OperationKind::Query,
        Some(t) if t.mutation_token().is_some() => OperationKind::Mutation,
        Some(t) if t.subscription_token().is_some() => OperationKind::Subscription,
        Some(_) => OperationKind::Query,
    };
    for field in top_fields(chosen.selection_set(), &fragments)? {
        units.insert(Operation { kind, field });
        if units.len() > MAX_UNITS {
            return Err(Unreadable::TooComplex);
        }
    }
    Ok(())
}

/// The operation named `name`, or the only one.
fn choose(
    mut operations: Vec<cst::OperationDefinition>,
    name: Option<&str>,
) -> Result<cst::OperationDefinition, Unreadable> {
    if let Some(name) = name {
        operations.retain(|op| op.name().is_some_and(|n| n.text() == name));
    }
    match (operations.pop(), operations.is_empty()) {
        (Some(op), true) => Ok(op),
        _ => Err(Unreadable::NoOperation),
    }
}

/// The names of the fields selected at the top of `set`, through
/// fragments; each fragment is expanded once.
fn top_fields(
    set: Option<cst::SelectionSet>,
    fragments: &HashMap<String, Option<cst::SelectionSet>>,
) -> Result<BTreeSet<String>, Unreadable> {
    let mut fields = BTreeSet::new();
    let mut spread = HashSet::new();
    let mut pending = vec![set];
    while let Some(set) = pending.pop() {
        for selection in set.iter().flat_map(cst::SelectionSet::selections) {
            match selection {
                cst::Selection::Field(f) => {
                    let name = f.name().ok_or(Unreadable::BadDocument)?;
                    fields.insert(name.text().to_string());
                }
                cst::Selection::InlineFragment(i) => pending.push(i.selection_set()),
                cst::Selection::FragmentSpread(s) => {
                    let name = s
                        .fragment_name()
                        .and_then(|n| n.name())
                        .ok_or(Unreadable::BadDocument)?
                        .text()
                        .to_string();
                    let set = fragments.get(&name).ok_or(Unreadable::BadDocument)?;
                    if spread.insert(name) {
                        pending.push(set.clone());
                    }
                }
            }
        }
    }
    // Only a cycle of fragments selects nothing; servers refuse it, and
    // an operation of no field would pass a type-only rule unjudged.
    if fields.is_empty() {
        return Err(Unreadable::BadDocument);
    }
    if fields.len() > MAX_UNITS {
        return Err(Unreadable::TooComplex);
    }
    Ok(fields)
}

#[cfg(test)]
#[path = "graphql_tests.rs"]
mod tests;
