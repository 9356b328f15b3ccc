//! Who is calling: a reviewer who may decide, an uploader, or nobody in particular.
//!
//! Two ways to know people, usable together:
//! - **Tokens** (`Authorization: Bearer <token>`): `FILE_APPROVER_REVIEWERS` and
//!   `FILE_APPROVER_UPLOADERS`, `name:token` lists kept as digests. What local mode and machine
//!   clients use.
//! - **App Service Authentication (Easy Auth)**, when `FILE_APPROVER_EASY_AUTH` says it is on:
//!   the platform signs people in and passes who they are in `X-MS-CLIENT-PRINCIPAL` (base64
//!   JSON) with `X-MS-CLIENT-PRINCIPAL-NAME` and `-ID`; app roles in its claims decide who may
//!   review and who may upload. The platform strips these headers from outside requests, but
//!   only where Easy Auth runs: anywhere else anyone can send them, so they are ignored unless
//!   the setting is on.
//!
//! Refusals: no credential where one is needed → 401 `Unauthorized`; a signed-in person without
//! the role → 403 `NotAReviewer` / `NotAnUploader`; an unreadable principal header → 400
//! `InvalidHeader`.

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use serde::Deserialize;

pub use crate::config::EasyAuth;
use crate::domain::Refusal;
use crate::domain::{Principal, Reviewers};
use crate::error::ApiError;

pub const PRINCIPAL_HEADER: &str = "x-ms-client-principal";
pub const PRINCIPAL_NAME_HEADER: &str = "x-ms-client-principal-name";
pub const PRINCIPAL_ID_HEADER: &str = "x-ms-client-principal-id";

/// Everything the edge needs to tell who is calling.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Who may decide, by token. Empty (and no Easy Auth): decisions are not authenticated.
    pub reviewers: Reviewers,
    /// Who may upload, by token, besides the reviewers. Set: uploads need a token.
    pub uploaders: Reviewers,
    pub easy_auth: Option<EasyAuth>,
}

/// A signed-in caller as Easy Auth describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub principal: Principal,
    pub roles: Vec<String>,
}

impl Access {
    /// Whether decisions need a known reviewer (else they are recorded as `anonymous`).
    pub fn decisions_are_authenticated(&self) -> bool {
        !self.reviewers.is_empty() || self.easy_auth.is_some()
    }

    /// The reviewer deciding: a signed-in principal with the reviewer role, or the holder of a
    /// reviewer's token; `anonymous` when nothing authenticates decisions.
    pub fn reviewer(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        if !self.decisions_are_authenticated() {
            return Ok(Principal::anonymous());
        }
        if let Some(easy) = &self.easy_auth {
            if let Some(signed_in) = signed_in(headers)? {
                if !signed_in.roles.contains(&easy.reviewer_role) {
                    return Err(ApiError::Refused(Refusal::NotAReviewer(format!(
                        "{} does not have the app role {:?} that reviewing needs",
                        signed_in.principal, easy.reviewer_role
                    ))));
                }
                return Ok(signed_in.principal);
            }
        }
        match bearer(headers)? {
            Some(token) => match self.reviewers.authenticate(token) {
                Some(reviewer) => Ok(reviewer),
                // Known, but only as an uploader: who they are is settled (not 401), what they
                // may do is not this.
                None => match self.uploaders.authenticate(token) {
                    Some(uploader) => Err(ApiError::Refused(Refusal::NotAReviewer(format!(
                        "{uploader} may upload but not review"
                    )))),
                    None => Err(ApiError::Refused(Refusal::Unauthorized(
                        "the token belongs to no reviewer".into(),
                    ))),
                },
            },
            None => Err(ApiError::Refused(Refusal::Unauthorized(
                match self.easy_auth {
                    Some(_) => {
                        "sign in (App Service Authentication) or send Authorization: Bearer <token>"
                            .into()
                    }
                    None => "an Authorization: Bearer <token> header is required".into(),
                },
            ))),
        }
    }

    /// A reviewer who may revoke an approval: any reviewer, and under Easy Auth with
    /// `FILE_APPROVER_REVOKER_ROLE` set, only one who also has that role.
    pub fn revoker(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let reviewer = self.reviewer(headers)?;
        if let Some(role) = self
            .easy_auth
            .as_ref()
            .and_then(|e| e.revoker_role.as_ref())
        {
            if let Some(signed_in) = signed_in(headers)? {
                if !signed_in.roles.contains(role) {
                    return Err(ApiError::Refused(Refusal::NotAReviewer(format!(
                        "{} does not have the app role {role:?} that revoking needs",
                        signed_in.principal
                    ))));
                }
            }
        }
        Ok(reviewer)
    }

    /// The uploader: a signed-in principal (with the uploader role, if one is set), or the
    /// holder of an uploader's or reviewer's token; `None` for an anonymous upload where those
    /// are allowed (no Easy Auth, no uploaders' list).
    pub fn uploader(&self, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
        if let Some(easy) = &self.easy_auth {
            if let Some(signed_in) = signed_in(headers)? {
                if let Some(role) = &easy.uploader_role {
                    if !signed_in.roles.contains(role) {
                        return Err(ApiError::Refused(Refusal::NotAnUploader(format!(
                            "{} does not have the app role {role:?} that uploading needs",
                            signed_in.principal
                        ))));
                    }
                }
                return Ok(Some(signed_in.principal));
            }
        }
        match bearer(headers)? {
            Some(token) => self
                .uploaders
                .authenticate(token)
                .or_else(|| self.reviewers.authenticate(token))
                .map(Some)
                .ok_or_else(|| {
                    ApiError::Refused(Refusal::Unauthorized(
                        "the token belongs to nobody known".into(),
                    ))
                }),
            None if self.easy_auth.is_some() => Err(ApiError::Refused(Refusal::Unauthorized(
                "sign in (App Service Authentication) or send Authorization: Bearer <token>".into(),
            ))),
            None if !self.uploaders.is_empty() => Err(ApiError::Refused(Refusal::Unauthorized(
                "uploads need an Authorization: Bearer <token> header".into(),
            ))),
            None => Ok(None),
        }
    }

    /// The uploader, who must be named for `what` (taking a file back, sending a new
    /// version): [`Access::uploader`], with an anonymous caller refused (`401`).
    pub fn named_uploader(&self, headers: &HeaderMap, what: &str) -> Result<Principal, ApiError> {
        self.uploader(headers)?.ok_or_else(|| {
            ApiError::Refused(Refusal::Unauthorized(format!(
                "{what} needs the uploader's identity: Authorization: Bearer <token> or a sign-in"
            )))
        })
    }

    /// What the request's credential lets its holder do, without refusing anyone (for a
    /// file's `allowedActions`): an unknown or unreadable credential is nobody in particular.
    pub fn rights(&self, headers: &HeaderMap) -> crate::files::actions::Caller {
        let reviewer = self.reviewer(headers).ok();
        crate::files::actions::Caller {
            person: self.caller(headers),
            revoker: reviewer.is_some() && self.revoker(headers).is_ok(),
            reviewer,
        }
    }

    /// Whoever the request names, if anyone (for the record of who asked for a link): the
    /// signed-in principal, or a known token's holder. Never refuses.
    pub fn caller(&self, headers: &HeaderMap) -> Option<Principal> {
        if self.easy_auth.is_some() {
            if let Ok(Some(signed_in)) = signed_in(headers) {
                return Some(signed_in.principal);
            }
        }
        let token = bearer(headers).ok()??;
        self.reviewers
            .authenticate(token)
            .or_else(|| self.uploaders.authenticate(token))
    }
}

/// `Authorization: Bearer <token>`: `None` without the header, an error when it is malformed.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or_else(|| {
            ApiError::Refused(Refusal::Unauthorized(
                "the Authorization header must be Bearer <token>".into(),
            ))
        })
}

/// App Service's principal: `{auth_typ, claims: [{typ, val}], name_typ, role_typ}`. Static
/// Web Apps' linked backends get `{identityProvider, userId, userDetails, userRoles}` instead;
/// both are read.
#[derive(Deserialize)]
struct PrincipalPayload {
    #[serde(default)]
    claims: Vec<Claim>,
    #[serde(default)]
    name_typ: Option<String>,
    #[serde(default)]
    role_typ: Option<String>,
    #[serde(default, rename = "userId")]
    user_id: Option<String>,
    #[serde(default, rename = "userDetails")]
    user_details: Option<String>,
    #[serde(default, rename = "userRoles")]
    user_roles: Vec<String>,
}

#[derive(Deserialize)]
struct Claim {
    typ: String,
    /// Usually a string; some providers send numbers.
    val: serde_json::Value,
}

impl Claim {
    fn value(&self) -> Option<String> {
        match &self.val {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

const OBJECT_ID_CLAIMS: [&str; 2] = [
    "http://schemas.microsoft.com/identity/claims/objectidentifier",
    "oid",
];
const ROLE_CLAIMS: [&str; 2] = [
    "roles",
    "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
];
const NAME_CLAIMS: [&str; 4] = [
    "preferred_username",
    "name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
];

/// The signed-in caller, from the principal headers; `None` when there are none. A header
/// that is present but unreadable is refused (400), not ignored.
pub fn signed_in(headers: &HeaderMap) -> Result<Option<SignedIn>, ApiError> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let Some(encoded) = text(PRINCIPAL_HEADER) else {
        return Ok(None);
    };
    let unreadable = |why: &str| {
        ApiError::Refused(Refusal::InvalidHeader(format!(
            "X-MS-CLIENT-PRINCIPAL is not a principal: {why}"
        )))
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| unreadable("not base64"))?;
    let payload: PrincipalPayload =
        serde_json::from_slice(&decoded).map_err(|_| unreadable("not its JSON shape"))?;
    // The first of `types`, in that order of preference, that the claims hold.
    let claim = |types: &[&str]| {
        types.iter().find_map(|t| {
            payload
                .claims
                .iter()
                .find(|c| c.typ == *t)
                .and_then(Claim::value)
        })
    };
    let name = text(PRINCIPAL_NAME_HEADER)
        .map(str::to_owned)
        .or_else(|| payload.name_typ.as_deref().and_then(|t| claim(&[t])))
        .or_else(|| payload.user_details.clone())
        .or_else(|| claim(&NAME_CLAIMS))
        .ok_or_else(|| unreadable("it names nobody"))?;
    let id = text(PRINCIPAL_ID_HEADER)
        .map(str::to_owned)
        .or_else(|| claim(&OBJECT_ID_CLAIMS))
        .or_else(|| payload.user_id.clone());
    let principal =
        Principal::parse(&name, id.as_deref()).map_err(|e| unreadable(&e.to_string()))?;
    let mut roles: Vec<String> = payload
        .claims
        .iter()
        .filter(|c| {
            ROLE_CLAIMS.contains(&c.typ.as_str()) || payload.role_typ.as_deref() == Some(&c.typ)
        })
        .filter_map(Claim::value)
        .collect();
    roles.extend(payload.user_roles.iter().cloned());
    roles.sort();
    roles.dedup();
    Ok(Some(SignedIn { principal, roles }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// The headers the platform would send for a fixture of `tests/fixtures/easy-auth/`.
    fn headers_of(fixture: &str) -> HeaderMap {
        let fixture: serde_json::Value = serde_json::from_str(fixture).unwrap();
        let mut headers = HeaderMap::new();
        for (k, v) in fixture["headers"].as_object().unwrap() {
            headers.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v.as_str().unwrap()).unwrap(),
            );
        }
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(fixture["principal"].to_string());
        headers.insert(PRINCIPAL_HEADER, HeaderValue::from_str(&encoded).unwrap());
        headers
    }

    #[test]
    fn an_entra_principal_gives_its_name_id_and_app_roles() {
        let headers = headers_of(include_str!(
            "../../tests/fixtures/easy-auth/aad-second-reviewer.json"
        ));
        let who = signed_in(&headers).unwrap().unwrap();
        assert_eq!(who.principal.as_str(), "erin@contoso.com");
        assert_eq!(
            who.principal.id(),
            Some("1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d")
        );
        assert_eq!(who.roles, vec!["Reviewer", "Uploader"]);
    }

    #[test]
    fn without_the_plain_headers_the_claims_name_the_principal() {
        let mut headers = headers_of(include_str!(
            "../../tests/fixtures/easy-auth/aad-reviewer.json"
        ));
        headers.remove(PRINCIPAL_NAME_HEADER);
        headers.remove(PRINCIPAL_ID_HEADER);
        let who = signed_in(&headers).unwrap().unwrap();
        // name_typ points at the mapped name claim, absent here: preferred_username then.
        assert_eq!(who.principal.as_str(), "dana@contoso.com");
        assert_eq!(
            who.principal.id(),
            Some("8f0c5d1e-2b7a-4e3c-9d61-5a4b3c2d1e0f")
        );
        assert_eq!(who.roles, vec!["Reviewer"]);
    }

    #[test]
    fn static_web_apps_principals_are_read_too() {
        let headers = headers_of(include_str!(
            "../../tests/fixtures/easy-auth/swa-reviewer.json"
        ));
        let who = signed_in(&headers).unwrap().unwrap();
        assert_eq!(who.principal.as_str(), "sam@contoso.com");
        assert_eq!(
            who.principal.id(),
            Some("d4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f70")
        );
        assert!(who.roles.contains(&"Reviewer".to_owned()));
    }

    #[test]
    fn a_github_principal_has_no_roles() {
        let headers = headers_of(include_str!(
            "../../tests/fixtures/easy-auth/github-no-role.json"
        ));
        let who = signed_in(&headers).unwrap().unwrap();
        assert_eq!(who.principal.as_str(), "octocat");
        assert!(who.roles.is_empty());
    }

    #[test]
    fn broken_principal_headers_are_refused_not_ignored() {
        for bad in ["%%%", "bm90IGpzb24=", "e30="] {
            let mut headers = HeaderMap::new();
            headers.insert(PRINCIPAL_HEADER, HeaderValue::from_static(bad));
            let err = signed_in(&headers).unwrap_err();
            assert_eq!(err.code(), "InvalidHeader", "{bad}");
        }
        assert!(signed_in(&HeaderMap::new()).unwrap().is_none());
    }
}
