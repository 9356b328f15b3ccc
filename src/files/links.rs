//! Download links checked at every use.
//!
//! `GET /api/files/{id}/download` hands out an app link, not a storage link:
//! `/api/files/{id}/content?se=<unix seconds>[&bound=1]&sig=<hex>`. `sig` is HMAC-SHA256,
//! under a key of the app's, over the file id, the expiry and (for a bound link) the stable id
//! of the person who asked for it. Each time the link is followed the app checks the
//! signature, the expiry, the file's stage and the download limit, records the fetch in the
//! file's audit, and only then redirects to a storage link valid for a few minutes
//! ([`super::Policy::fetch_ttl`]) to the pinned bytes. So a revocation, or a limit reached,
//! stops every link handed out before at once, and the history shows who fetched what.
//!
//! The key is 32 random bytes kept in the files table (partition `settings`), made by the
//! first process that needs it (an insert: a second process racing it reads the winner's).
//! Anyone who can read that table could mint links, but they could read the blobs anyway.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::audit;
use super::{Files, FilesError, FILES_TABLE};
use crate::domain::{FileId, Principal, Refusal, Stage};
use crate::store::{Entity, SignedUrlRequest, StoreError};

/// Tags the string-to-sign, so a change of format can never verify an old signature.
const SIGNATURE_VERSION: &str = "file-approver/download-link/v1";
const KEY_PARTITION: &str = "settings";
const KEY_ROW: &str = "download-link-key";
const KEY_BYTES: usize = 32;

/// The key links are signed with.
pub(super) struct LinkKey(Hmac<Sha256>);

impl LinkKey {
    fn from_bytes(bytes: &[u8]) -> Result<Self, FilesError> {
        if bytes.len() < KEY_BYTES {
            return Err(FilesError::Storage(StoreError::internal(
                "the stored download-link key is too short",
            )));
        }
        Hmac::<Sha256>::new_from_slice(bytes)
            .map(LinkKey)
            .map_err(|e| FilesError::Storage(StoreError::internal(e)))
    }

    fn mac(&self, id: FileId, expiry: i64, subject: &str) -> Hmac<Sha256> {
        // The id is a UUID and the expiry a number: neither holds a newline, so the subject,
        // last, cannot be mistaken for them.
        let mut mac = self.0.clone();
        mac.update(format!("{SIGNATURE_VERSION}\n{id}\n{expiry}\n{subject}").as_bytes());
        mac
    }
}

/// Who a bound link is for: the stable id where the sign-in gives one, else the name.
fn subject(principal: &Principal) -> &str {
    principal.id().unwrap_or(principal.as_str())
}

/// One following of a download link, as the edge saw it.
#[derive(Debug, Clone, Default)]
pub struct LinkUse {
    /// The link's query string, as received.
    pub query: String,
    /// Who followed it, when the request says (a sign-in, a token).
    pub caller: Option<Principal>,
    /// The client's address, as the platform reports it.
    pub client: Option<String>,
    pub user_agent: Option<String>,
    /// The first byte asked for, when the request has a `Range`: a resumed download.
    pub range_start: Option<u64>,
    /// A `HEAD`: the client only asks about the file; no bytes go out, nothing is recorded.
    pub head: bool,
}

/// Where a followed link leads: a short-lived storage link to the pinned bytes.
#[derive(Debug, Clone)]
pub struct Followed {
    pub url: String,
}

/// The parameters of a download link.
struct LinkQuery {
    expiry: i64,
    signature: Vec<u8>,
    bound: bool,
}

impl LinkQuery {
    fn parse(raw: &str) -> Result<LinkQuery, FilesError> {
        let invalid = |why: &str| {
            FilesError::Refused(Refusal::LinkInvalid(format!(
                "this is not a download link of this file: {why}"
            )))
        };
        let (mut se, mut sig, mut bound) = (None, None, None);
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let slot = match key.as_ref() {
                "se" => &mut se,
                "sig" => &mut sig,
                "bound" => &mut bound,
                // The function key, under the host; nothing else is ours.
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(invalid("a parameter appears twice"));
            }
        }
        let (Some(se), Some(sig)) = (se, sig) else {
            return Err(invalid("se and sig are required"));
        };
        Ok(LinkQuery {
            expiry: se.parse().map_err(|_| invalid("se is not a time"))?,
            signature: hex::decode(sig).map_err(|_| invalid("sig is not hex"))?,
            bound: match bound.as_deref() {
                None => false,
                Some("1") => true,
                Some(_) => return Err(invalid("bound is not 1")),
            },
        })
    }
}

impl Files {
    /// The link key, read once per process (made if nobody has yet).
    async fn link_key(&self) -> Result<&LinkKey, FilesError> {
        self.link_key
            .get_or_try_init(|| async {
                let read = |entity: &Entity| {
                    let encoded = entity.str("Key").unwrap_or_default();
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .map_err(|e| FilesError::Storage(StoreError::internal(e)))?;
                    LinkKey::from_bytes(&bytes)
                };
                match self
                    .store
                    .get_entity(FILES_TABLE, KEY_PARTITION, KEY_ROW)
                    .await
                {
                    Ok(stored) => return read(&stored.entity),
                    Err(StoreError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
                let mut bytes = [0u8; KEY_BYTES];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                let entity = Entity::new(KEY_PARTITION, KEY_ROW).with(
                    "Key",
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                );
                match self.store.insert_entity(FILES_TABLE, &entity).await {
                    Ok(_) => {
                        tracing::info!("made the key download links are signed with");
                        LinkKey::from_bytes(&bytes)
                    }
                    // Another process made it first: use theirs.
                    Err(StoreError::AlreadyExists) => {
                        let stored = self
                            .store
                            .get_entity(FILES_TABLE, KEY_PARTITION, KEY_ROW)
                            .await?;
                        read(&stored.entity)
                    }
                    Err(e) => Err(e.into()),
                }
            })
            .await
    }

    /// A download link to file `id` (path and query), valid until `expires_at` (whole
    /// seconds), for `bound_to` alone when given.
    pub(super) async fn mint_link(
        &self,
        id: FileId,
        expires_at: chrono::DateTime<chrono::Utc>,
        bound_to: Option<&Principal>,
    ) -> Result<String, FilesError> {
        let key = self.link_key().await?;
        let expiry = expires_at.timestamp();
        let signature = key
            .mac(id, expiry, bound_to.map(subject).unwrap_or(""))
            .finalize()
            .into_bytes();
        let bound = if bound_to.is_some() { "&bound=1" } else { "" };
        Ok(format!(
            "/api/files/{id}/content?se={expiry}{bound}&sig={}",
            hex::encode(signature)
        ))
    }

    /// Follows a download link: checks it (signature, expiry, who follows a bound link), then
    /// the file (still approved), then the limit, records the fetch, and returns the storage
    /// link to redirect to. Refusals: `LinkInvalid`, `LinkNotYours` (403); `LinkExpired`,
    /// `FileRevoked`, `DownloadLimitReached` (410). Never a redirect once any of them holds.
    pub async fn follow_link(&self, id: FileId, used: &LinkUse) -> Result<Followed, FilesError> {
        let link = LinkQuery::parse(&used.query)?;
        let key = self.link_key().await?;
        let subject = match (link.bound, &used.caller) {
            (false, _) => "",
            (true, Some(caller)) => subject(caller),
            (true, None) => {
                return Err(FilesError::Refused(Refusal::LinkNotYours(
                    "this link works only for the person who asked for it: sign in or send \
                     their token"
                        .into(),
                )))
            }
        };
        if key
            .mac(id, link.expiry, subject)
            .verify_slice(&link.signature)
            .is_err()
        {
            return Err(FilesError::Refused(if link.bound {
                Refusal::LinkNotYours(
                    "this link was asked for by somebody else (or altered)".into(),
                )
            } else {
                Refusal::LinkInvalid(format!(
                    "this is not a download link of file {id}: its signature does not match"
                ))
            }));
        }
        let now = self.clock.now();
        if now.timestamp() >= link.expiry {
            return Err(FilesError::Refused(Refusal::LinkExpired(format!(
                "this link expired at {}; ask for a new one at /api/files/{id}/download",
                chrono::DateTime::from_timestamp(link.expiry, 0).unwrap_or_default()
            ))));
        }
        let view = self.load(id).await?;
        let stage = view.stage();
        if stage != Stage::Approved {
            return Err(FilesError::Refused(Refusal::FileRevoked {
                message: format!("file {id} is {}: its links give no bytes", stage.describe()),
                current: stage,
            }));
        }
        if !used.head {
            let fetch = audit::Fetched {
                time: now,
                requester: used.caller.clone(),
                client: used.client.clone(),
                user_agent: used.user_agent.clone(),
                range_start: used.range_start.filter(|start| *start > 0),
                size: view.size(),
            };
            audit::record_fetch(self.store.as_ref(), id, &fetch, self.policy.max_downloads).await?;
        }
        let name = view.blob_name();
        let url = self
            .store
            .signed_read_url(&SignedUrlRequest {
                container: view.container(),
                name: &name,
                snapshot: view.snapshot(),
                expires_at: now + self.policy.fetch_ttl,
                download_name: view.name(),
            })
            .await?;
        Ok(Followed { url })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LinkKey {
        LinkKey::from_bytes(&[7; 32]).expect("a key")
    }

    #[test]
    fn a_signature_covers_the_file_the_expiry_and_the_subject() {
        let id = FileId::parse("3f1c0e1e-7d5c-4b8e-9a39-0c5d2b1f6a11").expect("id");
        let other = FileId::parse("3f1c0e1e-7d5c-4b8e-9a39-0c5d2b1f6a12").expect("id");
        let sig = key().mac(id, 100, "").finalize().into_bytes();
        assert!(key().mac(id, 100, "").verify_slice(&sig).is_ok());
        assert!(key().mac(other, 100, "").verify_slice(&sig).is_err());
        assert!(key().mac(id, 101, "").verify_slice(&sig).is_err());
        assert!(key().mac(id, 100, "alice").verify_slice(&sig).is_err());
    }

    #[test]
    fn malformed_queries_are_invalid_links() {
        for raw in [
            "",
            "se=1",
            "sig=00",
            "se=x&sig=00",
            "se=1&sig=zz",
            "se=1&se=2&sig=00",
            "se=1&sig=00&bound=yes",
        ] {
            assert!(
                matches!(
                    LinkQuery::parse(raw),
                    Err(FilesError::Refused(Refusal::LinkInvalid(_)))
                ),
                "{raw}"
            );
        }
        let link = LinkQuery::parse("se=5&bound=1&sig=0aff&code=k").expect("valid");
        assert_eq!((link.expiry, link.bound), (5, true));
    }
}
