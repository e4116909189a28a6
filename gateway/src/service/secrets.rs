//! Secrets: adding, rotating and removing them. A value is checked for
//! where it will be injected before it is sealed ([`check_value`]), and
//! never echoed in the error that refuses it.

use uuid::Uuid;

use super::types::*;
use super::{Service, ServiceError};
use crate::model::{Injection, SecretName};
use crate::policy::{HostPattern, PathGlob};
use crate::store::secrets::{self as stored, NewSecret};
use crate::vault::Sealed;

/// Longest secret value accepted: far above any real API key, far below
/// anything that would strain a header.
const MAX_VALUE_LEN: usize = 16 * 1024;

impl Service {
    pub async fn list_secrets(&self) -> Result<Vec<SecretView>, ServiceError> {
        Ok(self
            .store
            .list_secrets()
            .await?
            .iter()
            .map(SecretView::from)
            .collect())
    }

    pub async fn add_secret(&self, req: AddSecret) -> Result<SecretView, ServiceError> {
        let name = SecretName::parse(&req.name).map_err(|e| ServiceError::invalid("name", e))?;
        let host = HostPattern::parse(&req.host).map_err(|e| ServiceError::invalid("host", e))?;
        if host.is_wildcard_any() {
            return Err(ServiceError::invalid(
                "host",
                "a secret must name the host it belongs to; '*' would send it everywhere",
            ));
        }
        let path = PathGlob::parse(req.path.as_deref().unwrap_or(PathGlob::ANY))
            .map_err(|e| ServiceError::invalid("path", e))?;
        req.injection
            .validate()
            .map_err(|e| ServiceError::invalid("injection", e))?;
        check_value(&req.injection, &req.value)?;
        let id = Uuid::new_v4();
        let sealed = self.vault.seal(
            &stored::aad(&id, &name, &host, &path, &req.injection),
            req.value.expose().as_bytes(),
        )?;
        self.store
            .insert_secret(NewSecret {
                id,
                name: &name,
                host: &host,
                path: &path,
                injection: &req.injection,
                sealed: &sealed,
                key_id: self.vault.key_id(),
            })
            .await?;
        self.refresh().await;
        Ok(SecretView::from(&self.store.get_secret(&name).await?))
    }

    pub async fn rotate_secret(
        &self,
        name: &str,
        req: RotateSecret,
    ) -> Result<SecretView, ServiceError> {
        let name = SecretName::parse(name).map_err(|e| ServiceError::invalid("name", e))?;
        let current = self.store.get_secret(&name).await?;
        check_value(&current.injection, &req.value)?;
        self.store
            .rotate_secret(&name, |aad| -> Result<(Sealed, String), ServiceError> {
                let sealed = self.vault.seal(aad, req.value.expose().as_bytes())?;
                Ok((sealed, self.vault.key_id().to_owned()))
            })
            .await?;
        self.refresh().await;
        Ok(SecretView::from(&self.store.get_secret(&name).await?))
    }

    pub async fn delete_secret(&self, name: &str) -> Result<(), ServiceError> {
        let name = SecretName::parse(name).map_err(|e| ServiceError::invalid("name", e))?;
        self.store.delete_secret(&name).await?;
        self.refresh().await;
        Ok(())
    }
}

/// A value must be non-empty, bounded, and fit where it will be injected.
fn check_value(injection: &Injection, value: &SecretValue) -> Result<(), ServiceError> {
    let v = value.expose();
    if v.is_empty() {
        return Err(ServiceError::invalid(
            "value",
            "the secret value is empty: pipe the value on standard input",
        ));
    }
    if v.len() > MAX_VALUE_LEN {
        return Err(ServiceError::invalid(
            "value",
            format!("the secret value is longer than {MAX_VALUE_LEN} bytes"),
        ));
    }
    // Never echo the value: only say what kind of character is wrong.
    if v.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(ServiceError::invalid(
            "value",
            "the secret value contains a line break or control character \
             (a trailing newline is removed for you; others are not allowed)",
        ));
    }
    if let Injection::AwsSigv4 { .. } = injection {
        let ok = v
            .split_once(':')
            .is_some_and(|(id, key)| !id.is_empty() && !key.is_empty());
        if !ok {
            return Err(ServiceError::invalid(
                "value",
                "an AWS SigV4 secret's value must be ACCESS_KEY_ID:SECRET_ACCESS_KEY",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_without_being_echoed() {
        let header = Injection::header_from_spec("authorization").unwrap();
        let err = check_value(&header, &SecretValue::new("sk-abc\r\nX: y".into())).unwrap_err();
        assert!(!err.to_string().contains("sk-abc"));
        assert!(check_value(&header, &SecretValue::new(String::new())).is_err());
        assert!(check_value(&header, &SecretValue::new("sk-abc".into())).is_ok());
        let aws = Injection::aws_from_spec("us-east-1/s3").unwrap();
        assert!(check_value(&aws, &SecretValue::new("AKIA".into())).is_err());
        assert!(check_value(&aws, &SecretValue::new("AKIA:secret".into())).is_ok());
    }
}
