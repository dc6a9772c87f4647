//! Browser sessions and the sign-ins that create them (migration 12). The server keys both by
//! the SHA-256 of a secret only the browser holds, so this module never sees a usable cookie.
//! Sessions are read on every cookie-authenticated request of every node, so signing out (a
//! delete) takes effect everywhere at once; expired rows are refused on read and swept when
//! new ones are written, so neither table grows without bound.

use sqlx::QueryBuilder;

use crate::db::{Cols, on_read, on_write};
use crate::{Store, StoreError, UserKey};

/// Sessions whose liveness one [`Store::live_web_sessions`] statement reads.
const IDS_PER_READ: usize = 500;

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// SHA-256 (hex) of the cookie's secret.
    pub id: String,
    pub user: UserKey,
    /// Display name for the top bar.
    pub name: String,
    pub email: Option<String>,
    /// The token cookie-authenticated API calls must echo in `X-CSRF-Token`.
    pub csrf_token: String,
    pub created_ms: i64,
    /// Unix milliseconds after which the session is refused.
    pub expires_ms: i64,
}

/// A sign-in between the redirect to the identity provider and its redirect back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    /// SHA-256 (hex) of the login cookie's value.
    pub id: String,
    /// The `state` sent to the provider, which must come back unchanged.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier for the token request.
    pub pkce_verifier: String,
    pub expires_ms: i64,
}

fn session_from(row: &impl Cols) -> Result<WebSession, sqlx::Error> {
    Ok(WebSession {
        id: row.text("id")?,
        user: UserKey {
            org_id: row.text("org_id")?,
            user_id: row.text("user_id")?,
        },
        name: row.text("name")?,
        email: row.opt_text("email")?,
        csrf_token: row.text("csrf_token")?,
        created_ms: row.int("created_ms")?,
        expires_ms: row.int("expires_ms")?,
    })
}

impl Store {
    /// Stores a new session; sweeps expired ones; keeps at most `max_per_user` sessions for
    /// its user by removing the oldest. Returns the ids removed to make room.
    pub async fn create_web_session(
        &self,
        session: &WebSession,
        max_per_user: usize,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let keep = i64::try_from(max_per_user.max(1)).unwrap_or(i64::MAX);
        let removed = on_write!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM web_sessions WHERE expires_ms < $1")
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO web_sessions
                     (id, org_id, user_id, name, email, csrf_token, created_ms, expires_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&session.id)
            .bind(&session.user.org_id)
            .bind(&session.user.user_id)
            .bind(&session.name)
            .bind(&session.email)
            .bind(&session.csrf_token)
            .bind(session.created_ms)
            .bind(session.expires_ms)
            .execute(&mut *tx)
            .await?;
            let removed: Vec<String> = sqlx::query_scalar(
                "DELETE FROM web_sessions WHERE org_id = $1 AND user_id = $2 AND id NOT IN (
                     SELECT id FROM web_sessions WHERE org_id = $1 AND user_id = $2
                     ORDER BY created_ms DESC, id DESC LIMIT $3)
                 RETURNING id",
            )
            .bind(&session.user.org_id)
            .bind(&session.user.user_id)
            .bind(keep)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            removed
        });
        Ok(removed)
    }

    /// The session with this id, unless it is unknown, signed out or expired at `now_ms`.
    pub async fn web_session(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<WebSession>, StoreError> {
        let session = on_read!(&self.db, pool => {
            sqlx::query(
                "SELECT id, org_id, user_id, name, email, csrf_token, created_ms, expires_ms
                 FROM web_sessions WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|row| session_from(&row))
            .transpose()?
        });
        Ok(session.filter(|s| s.expires_ms >= now_ms))
    }

    /// Signs one session out; whether it existed.
    pub async fn delete_web_session(&self, id: &str) -> Result<bool, StoreError> {
        let done = on_write!(&self.db, pool => {
            sqlx::query("DELETE FROM web_sessions WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Signs every session of `user` out ("sign out everywhere"); returns their ids.
    pub async fn delete_user_web_sessions(
        &self,
        user: &UserKey,
    ) -> Result<Vec<String>, StoreError> {
        let ids = on_write!(&self.db, pool => {
            sqlx::query_scalar(
                "DELETE FROM web_sessions WHERE org_id = $1 AND user_id = $2 RETURNING id",
            )
            .bind(&user.org_id)
            .bind(&user.user_id)
            .fetch_all(pool)
            .await?
        });
        Ok(ids)
    }

    /// Which of `ids` are still live sessions at `now_ms` (in no particular order).
    pub async fn live_web_sessions(
        &self,
        ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut live = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_READ) {
            let rows: Vec<String> = on_read!(&self.db, pool => {
                let mut q = QueryBuilder::new("SELECT id FROM web_sessions WHERE expires_ms >= ");
                q.push_bind(now_ms);
                q.push(" AND id IN (");
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id);
                }
                q.push(")");
                q.build_query_scalar().fetch_all(pool).await?
            });
            live.extend(rows);
        }
        Ok(live)
    }

    /// Records a sign-in in progress, after sweeping expired ones; `false` (nothing stored)
    /// when `max_pending` sign-ins are already in progress.
    pub async fn start_oidc_login(
        &self,
        login: &PendingLogin,
        max_pending: u64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let max = i64::try_from(max_pending).unwrap_or(i64::MAX);
        let started = on_write!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM oidc_logins WHERE expires_ms < $1")
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oidc_logins")
                .fetch_one(&mut *tx)
                .await?;
            let room = pending < max;
            if room {
                sqlx::query(
                    "INSERT INTO oidc_logins (id, state, nonce, pkce_verifier, expires_ms)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&login.id)
                .bind(&login.state)
                .bind(&login.nonce)
                .bind(&login.pkce_verifier)
                .bind(login.expires_ms)
                .execute(&mut *tx)
                .await?;
            }
            // Committed either way, so the sweep above is kept.
            tx.commit().await?;
            room
        });
        Ok(started)
    }

    /// Takes the sign-in with this id: whatever the answer, it can never be taken again.
    /// `None` when unknown, already taken, or expired at `now_ms`.
    pub async fn take_oidc_login(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<PendingLogin>, StoreError> {
        let login = on_write!(&self.db, pool => {
            sqlx::query(
                "DELETE FROM oidc_logins WHERE id = $1
                 RETURNING id, state, nonce, pkce_verifier, expires_ms",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|row| {
                Ok::<_, sqlx::Error>(PendingLogin {
                    id: row.text("id")?,
                    state: row.text("state")?,
                    nonce: row.text("nonce")?,
                    pkce_verifier: row.text("pkce_verifier")?,
                    expires_ms: row.int("expires_ms")?,
                })
            })
            .transpose()?
        });
        Ok(login.filter(|l| l.expires_ms >= now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserKey {
        UserKey {
            org_id: "acme".into(),
            user_id: name.into(),
        }
    }

    fn session(id: &str, who: &str, created_ms: i64, expires_ms: i64) -> WebSession {
        WebSession {
            id: id.into(),
            user: user(who),
            name: format!("{who} name"),
            email: Some(format!("{who}@acme.test")),
            csrf_token: format!("csrf-{id}"),
            created_ms,
            expires_ms,
        }
    }

    #[tokio::test]
    async fn a_session_is_read_until_it_expires_or_is_signed_out() {
        for t in crate::test_support::stores().await {
            let store = &t.store;
            let s = session("s1", "alice", 1_000, 5_000);
            assert!(
                store
                    .create_web_session(&s, 10, 1_000)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(
                store.web_session("s1", 4_000).await.unwrap(),
                Some(s.clone())
            );
            assert_eq!(
                store.web_session("s1", 5_001).await.unwrap(),
                None,
                "expired"
            );
            assert_eq!(store.web_session("nope", 0).await.unwrap(), None);
            assert!(store.delete_web_session("s1").await.unwrap());
            assert!(!store.delete_web_session("s1").await.unwrap());
            assert_eq!(
                store.web_session("s1", 4_000).await.unwrap(),
                None,
                "signed out"
            );
        }
    }

    #[tokio::test]
    async fn a_user_keeps_at_most_the_newest_sessions_and_expired_ones_are_swept() {
        for t in crate::test_support::stores().await {
            let store = &t.store;
            let other = session("b1", "bob", 1, 10_000);
            store.create_web_session(&other, 2, 1).await.unwrap();
            // Made while still live; swept by a later write once expired.
            let old = session("a0", "alice", 2, 500);
            store.create_web_session(&old, 2, 2).await.unwrap();
            for (k, id) in ["a1", "a2", "a3"].iter().enumerate() {
                let made = 1_000 + k as i64;
                let removed = store
                    .create_web_session(&session(id, "alice", made, 10_000), 2, made)
                    .await
                    .unwrap();
                // a0 expired before a1 was made: swept, not counted against alice.
                let want: Vec<String> = if *id == "a3" {
                    vec!["a1".into()]
                } else {
                    vec![]
                };
                assert_eq!(removed, want, "{id}");
            }
            let ids: Vec<String> = ["a0", "a1", "a2", "a3", "b1", "zz"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let mut live = store.live_web_sessions(&ids, 2_000).await.unwrap();
            live.sort();
            assert_eq!(live, vec!["a2", "a3", "b1"]);
            // Sign out everywhere takes alice's sessions only.
            let mut gone = store
                .delete_user_web_sessions(&user("alice"))
                .await
                .unwrap();
            gone.sort();
            assert_eq!(gone, vec!["a2", "a3"]);
            assert!(store.web_session("b1", 2_000).await.unwrap().is_some());
            assert_eq!(
                store.live_web_sessions(&[], 0).await.unwrap(),
                Vec::<String>::new()
            );
        }
    }

    #[tokio::test]
    async fn many_ids_are_checked_in_chunks() {
        for t in crate::test_support::stores().await {
            let store = &t.store;
            for k in 0..3 {
                let s = session(&format!("s{k}"), &format!("u{k}"), 1, 10_000);
                store.create_web_session(&s, 5, 1).await.unwrap();
            }
            let ids: Vec<String> = (0..1_203).map(|k| format!("s{k}")).collect();
            let mut live = store.live_web_sessions(&ids, 5).await.unwrap();
            live.sort();
            assert_eq!(live, vec!["s0", "s1", "s2"]);
        }
    }

    fn login(id: &str, expires_ms: i64) -> PendingLogin {
        PendingLogin {
            id: id.into(),
            state: format!("state-{id}"),
            nonce: format!("nonce-{id}"),
            pkce_verifier: format!("verifier-{id}"),
            expires_ms,
        }
    }

    #[tokio::test]
    async fn a_sign_in_is_taken_once_and_pending_ones_are_capped() {
        for t in crate::test_support::stores().await {
            let store = &t.store;
            assert!(
                store
                    .start_oidc_login(&login("l1", 2_000), 2, 1_000)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .start_oidc_login(&login("l2", 2_000), 2, 1_000)
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .start_oidc_login(&login("l3", 2_000), 2, 1_000)
                    .await
                    .unwrap(),
                "the cap is reached"
            );
            assert_eq!(store.take_oidc_login("l3", 1_000).await.unwrap(), None);
            assert_eq!(
                store.take_oidc_login("l1", 1_500).await.unwrap(),
                Some(login("l1", 2_000))
            );
            assert_eq!(
                store.take_oidc_login("l1", 1_500).await.unwrap(),
                None,
                "taken"
            );
            assert_eq!(
                store.take_oidc_login("l2", 2_001).await.unwrap(),
                None,
                "expired"
            );
            // Expired sign-ins are swept, so they no longer count.
            assert!(
                store
                    .start_oidc_login(&login("l4", 9_000), 1, 3_000)
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .start_oidc_login(&login("l5", 9_000), 1, 3_000)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .start_oidc_login(&login("l5", 19_000), 1, 10_000)
                    .await
                    .unwrap()
            );
        }
    }
}
