//! Every stored envelope, wherever it lives: what key rotation re-wraps and the key-usage
//! report counts.

use super::rows::{
    envelope_keys, envelope_select, envelope_update, stored_envelope_from_row, EnvelopeKey,
    ENVELOPE_FIELDS,
};
use super::{Store, StoreError, StoredEnvelope};
use crate::crypto::Envelope;

impl Store {
    /// Every stored envelope (key rotation and the key-usage report).
    pub async fn all_envelopes(&self) -> Result<Vec<StoredEnvelope>, StoreError> {
        on_db!(self, |db| {
            let mut out = Vec::new();
            for field in ENVELOPE_FIELDS {
                let rows = sqlx::query(&envelope_select(field)).fetch_all(db).await?;
                for row in &rows {
                    out.push(stored_envelope_from_row(field, row)?);
                }
            }
            Ok(out)
        })
    }

    /// Writes `new` in place of `old.envelope`, only if the stored value is still exactly
    /// `old.envelope` (a token refreshed meanwhile is newer and left alone); `false` then.
    pub async fn replace_envelope(
        &self,
        old: &StoredEnvelope,
        new: &Envelope,
    ) -> Result<bool, StoreError> {
        on_db!(self, |db| {
            let sql = envelope_update(old.field);
            let mut query = sqlx::query(&sql).bind(new.to_bytes());
            for key in envelope_keys(old) {
                query = match key {
                    EnvelopeKey::Text(t) => query.bind(t),
                    EnvelopeKey::Bytes(b) => query.bind(b),
                };
            }
            let done = query.bind(old.envelope.to_bytes()).execute(db).await?;
            Ok(done.rows_affected() == 1)
        })
    }
}
