//! OAuth2 provider presets: the authorization and token endpoints,
//! scopes and quirks of the providers operators connect most, as data
//! (`gateway/presets/oauth2.toml`, compiled in), not code paths. A preset
//! fills in an OAuth2 grant's public fields; the grant keeps them, so a
//! change to the file never changes a stored secret.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::model::{GrantType, InjectionError, OAuth2Grant};

const PRESETS_TOML: &str = include_str!("../../presets/oauth2.toml");

/// One provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub id: String,
    pub name: String,
    pub authorize_url: String,
    pub token_url: String,
    pub scopes: Vec<String>,
    pub authorize_params: BTreeMap<String, String>,
    pub note: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    preset: Vec<Preset>,
}

static PRESETS: LazyLock<Vec<Preset>> = LazyLock::new(|| {
    // The file is compiled in and checked by the tests below: a parse
    // failure here is a build that was never tested.
    toml::from_str::<File>(PRESETS_TOML)
        .map(|f| f.preset)
        .unwrap_or_default()
});

/// Every preset, in the file's order.
pub fn all() -> &'static [Preset] {
    &PRESETS
}

/// The preset `id`, or an error that lists the known ones.
pub fn find(id: &str) -> Result<&'static Preset, UnknownPreset> {
    all()
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| UnknownPreset { id: id.to_owned() })
}

/// A preset id that is not in the file.
#[derive(Debug, thiserror::Error)]
#[error("there is no OAuth2 preset {id:?}; the presets are: {known}", known = ids())]
pub struct UnknownPreset {
    id: String,
}

fn ids() -> String {
    all()
        .iter()
        .map(|p| p.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Preset {
    /// The refresh-token grant this preset describes for `client_id`,
    /// with the preset's scopes first and then `extra_scopes` (without
    /// repeats), connected from the dashboard.
    pub fn grant(
        &self,
        client_id: String,
        extra_scopes: &[String],
    ) -> Result<OAuth2Grant, InjectionError> {
        let mut scopes = self.scopes.clone();
        for s in extra_scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        let grant = OAuth2Grant {
            authorize_url: Some(self.authorize_url.clone()),
            authorize_params: self.authorize_params.clone(),
            ..OAuth2Grant::new(
                GrantType::RefreshToken,
                self.token_url.clone(),
                client_id,
                scopes,
            )
        };
        grant.validate()?;
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_parses_and_every_preset_makes_a_valid_grant() {
        let file: File = toml::from_str(PRESETS_TOML).expect("presets/oauth2.toml parses");
        assert_eq!(file.preset, all());
        for id in ["google", "microsoft", "github", "slack"] {
            let p = find(id).expect(id);
            let g = p.grant("client-1".into(), &["extra".into()]).expect(id);
            assert!(g.connectable(), "{id}");
            assert_eq!(g.scopes.last().map(String::as_str), Some("extra"));
            assert!(!p.note.is_empty(), "{id} says what to register");
        }
        let mut ids: Vec<_> = all().iter().map(|p| &p.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all().len(), "ids are unique");
    }

    #[test]
    fn scopes_are_not_repeated_and_unknown_ids_name_the_known() {
        let g = find("microsoft")
            .unwrap()
            .grant("c".into(), &["offline_access".into(), "Mail.Read".into()])
            .unwrap();
        assert_eq!(g.scopes, ["offline_access", "Mail.Read"]);
        let e = find("gitlab").unwrap_err().to_string();
        assert!(e.contains("google, microsoft, github, slack"), "{e}");
    }
}
