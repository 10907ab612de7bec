//! Bearer tokens: HS256 JWTs signed with the server's secret, claims `sub` (user id as a
//! decimal string), `dev` (device id) and `exp` (seconds since the epoch).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{DeviceId, UserId, parse_user};

/// Who a request comes from, once its token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserId,
    pub device: DeviceId,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    dev: String,
    exp: u64,
}

/// Why a token was refused (401 `unauthorized`), or the secret could not be used.
#[derive(Debug, Error)]
pub enum AuthError {
    #[error("unusable JWT secret (it must not be empty): {0}")]
    Secret(String),
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Signs and checks tokens with one secret.
#[derive(Clone)]
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Auth {
    /// Keys for the given shared secret, which must not be empty.
    pub fn new(secret: &str) -> Result<Self, AuthError> {
        let bad = |e: jsonwebtoken::errors::Error| AuthError::Secret(e.to_string());
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Auth {
            encoding: EncodingKey::from_secret(secret.as_bytes()).map_err(bad)?,
            decoding: DecodingKey::from_secret(secret.as_bytes()).map_err(bad)?,
            validation,
        })
    }

    /// A token for `user` on `device`, valid until `exp` (seconds since the epoch).
    pub fn issue(&self, user: UserId, device: &DeviceId, exp: u64) -> String {
        let claims = Claims {
            sub: user.to_string(),
            dev: device.to_string(),
            exp,
        };
        // HS256 signing of a plain struct has no failure mode short of a broken allocator.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// Checks a token's signature and expiry and reads who it speaks for.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let user = parse_user(&data.claims.sub).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let device = data
            .claims
            .dev
            .parse()
            .map_err(|e: crate::model::InvalidId| AuthError::Invalid(e.to_string()))?;
        Ok(Identity { user, device })
    }
}

/// Seconds since the epoch, for token expiry.
pub fn now_secs() -> u64 {
    crate::model::now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_bad_ones_are_refused() {
        let auth = Auth::new("s3cret").unwrap();
        let dev: DeviceId = "phone".parse().unwrap();
        let tok = auth.issue(7, &dev, now_secs() + 60);
        assert_eq!(
            auth.verify(&tok).unwrap(),
            Identity {
                user: 7,
                device: dev.clone()
            }
        );
        assert!(
            Auth::new("other").unwrap().verify(&tok).is_err(),
            "wrong secret"
        );
        assert!(Auth::new("").is_err());
        assert!(
            auth.verify(&auth.issue(7, &dev, now_secs() - 1)).is_err(),
            "expired"
        );
        assert!(auth.verify("not.a.jwt").is_err());
        assert!(
            auth.verify(&auth.issue(0, &dev, now_secs() + 60)).is_err(),
            "user 0"
        );
    }
}
