//! WebSocket tickets: issued for an authenticated user, redeemed at most once. Redeeming is
//! one `DELETE … RETURNING`, so two handshakes racing with the same ticket cannot both win,
//! whichever node they reach.

use crate::db::{Cols, on_write};
use crate::{Store, StoreError, UserKey};

/// What a new ticket is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketGrant {
    pub user: UserKey,
    /// Unix milliseconds after which the ticket is refused.
    pub expires_ms: i64,
    /// Expiry of the credential the ticket was issued for (unix seconds), if it has one.
    pub token_exp: Option<i64>,
    /// The browser session the ticket was bought with, if any: its connection ends when that
    /// session is signed out.
    pub web_session: Option<String>,
}

/// The outcome of presenting a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The ticket was valid; it is now used up.
    Valid(TicketGrant),
    /// The ticket existed but had expired; it is now removed.
    Expired,
    /// No such ticket: never issued, or already used.
    Unknown,
}

impl Store {
    /// Stores a ticket and sweeps expired ones, so unredeemed tickets never pile up.
    pub async fn issue_ticket(
        &self,
        ticket: &str,
        grant: &TicketGrant,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_write!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM ws_tickets WHERE expires_ms < $1")
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO ws_tickets (ticket, org_id, user_id, expires_ms, token_exp, web_session)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(ticket)
            .bind(&grant.user.org_id)
            .bind(&grant.user.user_id)
            .bind(grant.expires_ms)
            .bind(grant.token_exp)
            .bind(&grant.web_session)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Consumes `ticket`: whatever the answer, it can never be redeemed again.
    pub async fn redeem_ticket(&self, ticket: &str, now_ms: i64) -> Result<Redeemed, StoreError> {
        let grant = on_write!(&self.db, pool => {
            sqlx::query(
                "DELETE FROM ws_tickets WHERE ticket = $1
                 RETURNING org_id, user_id, expires_ms, token_exp, web_session",
            )
            .bind(ticket)
            .fetch_optional(pool)
            .await?
            .map(|row| {
                Ok::<_, sqlx::Error>(TicketGrant {
                    user: UserKey {
                        org_id: row.text("org_id")?,
                        user_id: row.text("user_id")?,
                    },
                    expires_ms: row.int("expires_ms")?,
                    token_exp: row.opt_int("token_exp")?,
                    web_session: row.opt_text("web_session")?,
                })
            })
            .transpose()?
        });
        let Some(grant) = grant else {
            return Ok(Redeemed::Unknown);
        };
        Ok(if grant.expires_ms < now_ms {
            Redeemed::Expired
        } else {
            Redeemed::Valid(grant)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(expires_ms: i64) -> TicketGrant {
        TicketGrant {
            user: UserKey {
                org_id: "acme".into(),
                user_id: "alice".into(),
            },
            expires_ms,
            token_exp: Some(99),
            web_session: Some("ws1".into()),
        }
    }

    #[tokio::test]
    async fn a_ticket_is_redeemed_once_and_expired_ones_are_refused() {
        for t in crate::test_support::stores().await {
            let store = &t.store;
            store
                .issue_ticket("t1", &grant(2_000), 1_000)
                .await
                .unwrap();
            store
                .issue_ticket("t2", &grant(2_000), 1_000)
                .await
                .unwrap();
            assert_eq!(
                store.redeem_ticket("t1", 1_500).await.unwrap(),
                Redeemed::Valid(grant(2_000))
            );
            assert_eq!(
                store.redeem_ticket("t1", 1_500).await.unwrap(),
                Redeemed::Unknown
            );
            assert_eq!(
                store.redeem_ticket("t2", 2_001).await.unwrap(),
                Redeemed::Expired
            );
            assert_eq!(
                store.redeem_ticket("nope", 0).await.unwrap(),
                Redeemed::Unknown
            );
            // Issuing sweeps expired tickets.
            store.issue_ticket("t3", &grant(500), 0).await.unwrap();
            store
                .issue_ticket("t4", &grant(5_000), 1_000)
                .await
                .unwrap();
            assert_eq!(
                store.redeem_ticket("t3", 0).await.unwrap(),
                Redeemed::Unknown
            );
        }
    }
}
