//! Every stored envelope, wherever it lives: what key rotation re-wraps and the key-usage
//! report counts.

use super::exec::{args, Arg};
use super::rows::{envelope_select, envelope_update, stored_envelope_from_row, ENVELOPE_FIELDS};
use super::{EnvelopeField, Store, StoreError, StoredEnvelope};
use crate::crypto::Envelope;

impl Store {
    /// Every stored envelope (key rotation and the key-usage report).
    pub async fn all_envelopes(&self) -> Result<Vec<StoredEnvelope>, StoreError> {
        let mut out = Vec::new();
        for field in ENVELOPE_FIELDS {
            let sql = envelope_select(field);
            let found = self
                .fetch_all(&sql, &[], |row| stored_envelope_from_row(field, row))
                .await?;
            out.extend(found);
        }
        Ok(out)
    }

    /// Writes `new` in place of `old.envelope`, only if the stored value is still exactly
    /// `old.envelope` (a token refreshed meanwhile is newer and left alone); `false` then.
    pub async fn replace_envelope(
        &self,
        old: &StoredEnvelope,
        new: &Envelope,
    ) -> Result<bool, StoreError> {
        let mut binds = vec![Arg::from(new.to_bytes())];
        binds.extend(keys(old));
        binds.push(Arg::from(old.envelope.to_bytes()));
        Ok(self.execute(&envelope_update(old.field), &binds).await? == 1)
    }
}

/// The values of the keys [`envelope_update`] finds an envelope by, in order.
fn keys(old: &StoredEnvelope) -> Vec<Arg<'_>> {
    match old.field {
        EnvelopeField::ProviderClientSecret | EnvelopeField::WebhookSecret => {
            args![&old.provider_id].into()
        }
        EnvelopeField::ConnectionClientSecret
        | EnvelopeField::AccessToken
        | EnvelopeField::RefreshToken => args![&old.provider_id, &old.connection_id].into(),
        EnvelopeField::CodeVerifier => args![old.state_hash.as_slice()].into(),
    }
}
