//! `POST /api/ws-ticket` and `GET /ws?ticket=` (PROTOCOL.md §1, §7): a ticket opens one
//! connection as the user and org it was issued for, once; reused, unknown or expired
//! tickets are 401 before any upgrade.

mod common;

use common::*;
use serde_json::json;

const SECRET: &str = "ticket-test-secret-of-some-length";

async fn jwt_server(dir: &std::path::Path) -> Server {
    Server::start(
        dir,
        &[("APOGEE_AUTH", "jwt"), ("APOGEE_JWT_HS256_SECRET", SECRET)],
    )
    .await
}

#[tokio::test]
async fn a_ticket_opens_one_connection_as_its_user_and_is_then_spent() {
    let dir = tempfile::tempdir().unwrap();
    let server = jwt_server(dir.path()).await;
    let alice = hs256(
        SECRET,
        &json!({"sub":"alice","org":"acme","exp": unix_now() + 600}),
    );

    let (status, _) = http(&server.addr, "POST", "/api/ws-ticket", &[], b"").await;
    assert_eq!(status, 401, "tickets need credentials");

    let t = ws_ticket(&server.addr, &alice).await;
    assert_eq!(t["expires_in"], 60);
    let ticket = t["ticket"].as_str().unwrap().to_string();
    // A malformed request is refused without spending the ticket.
    let bad = handshake(&server.addr, &format!("?ticket={ticket}&last_seq=-1"), &[]).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    // Demo `?user=` is ignored: the ticket says who this is.
    let mut h = handshake(&server.addr, &format!("?ticket={ticket}&user=eve"), &[]).await;
    assert_eq!(h.status, 101, "{}", h.body);
    let ready = h.client.as_mut().unwrap().ready().await;
    assert_eq!(
        (ready["user_id"].as_str(), ready["org_id"].as_str()),
        (Some("alice"), Some("acme"))
    );

    let again = handshake(&server.addr, &format!("?ticket={ticket}"), &[]).await;
    assert_eq!(again.status, 401, "reused");
    assert!(again.body.contains("unauthorized"), "{}", again.body);
    for bad in ["nope", "", &"t".repeat(5000)] {
        assert_eq!(
            handshake(&server.addr, &format!("?ticket={bad}"), &[])
                .await
                .status,
            401,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn two_handshakes_racing_with_one_ticket_get_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = jwt_server(dir.path()).await;
    let bob = hs256(
        SECRET,
        &json!({"sub":"bob","org":"acme","exp": unix_now() + 600}),
    );
    for _ in 0..5 {
        let ticket = ws_ticket(&server.addr, &bob).await["ticket"]
            .as_str()
            .unwrap()
            .to_string();
        let q = format!("?ticket={ticket}");
        let (a, b) = tokio::join!(
            handshake(&server.addr, &q, &[]),
            handshake(&server.addr, &q, &[])
        );
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses, [101, 401]);
    }
}

#[tokio::test]
async fn an_expired_ticket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = jwt_server(dir.path()).await;
    // A ticket whose 60 s are over, written as the server would have stored it.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", server.db_path().display()))
        .await
        .unwrap();
    let now_ms = chrono::Utc::now().timestamp_millis();
    sqlx::query("INSERT INTO ws_tickets (ticket, org_id, user_id, expires_ms, token_exp) VALUES (?, 'acme', 'alice', ?, NULL)")
        .bind("t_expired")
        .bind(now_ms - 1_000)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO ws_tickets (ticket, org_id, user_id, expires_ms, token_exp) VALUES (?, 'acme', 'alice', ?, NULL)")
        .bind("t_live")
        .bind(now_ms + 60_000)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let h = handshake(&server.addr, "?ticket=t_expired", &[]).await;
    assert_eq!(h.status, 401);
    assert!(h.body.contains("expired"), "{}", h.body);
    // The same row shape, still valid, connects: the refusal above was the expiry.
    assert_eq!(
        handshake(&server.addr, "?ticket=t_live", &[]).await.status,
        101
    );
}

#[tokio::test]
async fn a_ticket_connection_closes_when_the_token_it_came_from_expires() {
    let dir = tempfile::tempdir().unwrap();
    let server = jwt_server(dir.path()).await;
    // Expires in 2 s (inside the verifier's leeway the handshake still succeeds).
    let short = hs256(
        SECRET,
        &json!({"sub":"alice","org":"acme","exp": unix_now() + 2}),
    );
    let ticket = ws_ticket(&server.addr, &short).await["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let mut h = handshake(&server.addr, &format!("?ticket={ticket}"), &[]).await;
    assert_eq!(h.status, 101);
    let c = h.client.as_mut().unwrap();
    c.ready().await;
    assert_eq!(c.close_code().await, Some(4001));
}
