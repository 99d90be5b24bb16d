//! The operator's CLI against a live server's database, and the default start-up.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{TestApp, error_code, on_both_backends};

async fn user_commands_manage_accounts(app: TestApp) {
    let (ok, out) = app.cli(&["user", "add", "--email", "Root@Example.com", "--name", "Root"], "operator password\n");
    assert!(ok, "{out}");
    assert!(out.contains("root@example.com") && out.contains("admin"), "first account is admin: {out}");
    let (ok, out) = app.cli(&["user", "add", "--email", "eve@example.com", "--name", "Eve"], "eve password 1\n");
    assert!(ok && out.contains("\tuser\t"), "{out}");
    let (ok, out) = app.cli(&["user", "add", "--email", "eve@example.com", "--name", "Eve"], "eve password 1\n");
    assert!(!ok && out.contains("already exists"), "{out}");

    let login = |email, password| app.login(email, password);
    assert_eq!(login("eve@example.com", "eve password 1").await["data"]["login"]["user"]["role"], "USER");

    let (ok, out) = app.cli(&["user", "set-role", "eve@example.com", "admin"], "");
    assert!(ok, "{out}");
    assert_eq!(login("eve@example.com", "eve password 1").await["data"]["login"]["user"]["role"], "ADMIN");

    let old_session = login("eve@example.com", "eve password 1").await["data"]["login"]["token"].clone();
    let (ok, out) = app.cli(&["user", "set-password", "eve@example.com"], "eve password 2\n");
    assert!(ok, "{out}");
    assert_eq!(error_code(&login("eve@example.com", "eve password 1").await), "UNAUTHENTICATED");
    let me = app.graphql(old_session.as_str(), "{ me { id } }", json!({})).await;
    assert_eq!(error_code(&me), "UNAUTHENTICATED", "a new password ends the old sessions");
    assert!(login("eve@example.com", "eve password 2").await.get("errors").is_none());

    let (ok, out) = app.cli(&["user", "disable", "eve@example.com"], "");
    assert!(ok && out.contains("disabled"), "{out}");
    assert_eq!(error_code(&login("eve@example.com", "eve password 2").await), "FORBIDDEN");

    let (ok, out) = app.cli(&["user", "list"], "");
    assert!(ok && out.lines().filter(|l| l.contains('@')).count() == 2, "{out}");
    assert!(out.contains("eve@example.com\tadmin\tdisabled"), "{out}");

    let (ok, out) = app.cli(&["user", "add", "--email", "x@example.com", "--name", "X"], "short\n");
    assert!(!ok && out.contains("password"), "{out}");
}

async fn disabling_ends_live_sessions(app: TestApp) {
    let (token, _) = app.register("ada@example.com").await;
    let (ok, out) = app.cli(&["user", "disable", "ada@example.com"], "");
    assert!(ok, "{out}");
    assert_eq!(error_code(&app.graphql(Some(&token), "{ me { id } }", json!({})).await), "UNAUTHENTICATED");
    // Enabling again does not bring the ended session back.
    let (ok, out) = app.cli(&["user", "enable", "ada@example.com"], "");
    assert!(ok, "{out}");
    assert_eq!(error_code(&app.graphql(Some(&token), "{ me { id } }", json!({})).await), "UNAUTHENTICATED");
    assert!(app.login("ada@example.com", "correct horse battery").await.get("errors").is_none());
}

/// `secrets rotate` moves every stored credential to the new key, all or nothing.
async fn secrets_rotate_moves_every_secret_to_the_new_key(app: TestApp) {
    use base64::Engine;
    use futures_util::FutureExt;
    use liteskill::crypto::{Binding, SecretBox};
    use liteskill::storage::secrets::{self, SecretRow};
    use liteskill::storage::sql_types::{DbTime, DbUuid};
    use secrecy::ExposeSecret;

    let (old, new) = ([3u8; 32], [4u8; 32]);
    let base64 = |key: &[u8; 32]| base64::engine::general_purpose::STANDARD.encode(key);
    let old_box = SecretBox::new(&old, &[]);
    let mut stored = vec![];
    for n in 0..3 {
        let id = uuid::Uuid::new_v4();
        let plaintext = format!("sk-secret-{n}");
        let sealed = old_box.seal(Binding { row: &id.to_string(), purpose: "mcp_api_key" }, &plaintext);
        let row =
            SecretRow { id: DbUuid(id), purpose: "mcp_api_key".into(), sealed, updated_at: DbTime(chrono::Utc::now()) };
        app.db().write(move |conn| async move { secrets::put(conn, &row).await }.boxed()).await.expect("put");
        stored.push((id, plaintext));
    }
    let read = || async {
        let mut conn = app.db().conn().await.expect("connection");
        secrets::all(&mut conn).await.expect("secrets")
    };

    // A key that opens none of them: refused, nothing changed.
    let (ok, out) = app.cli_with(&["secrets", "rotate"], &[("ENCRYPTION_KEY", &base64(&[5; 32]))], "");
    assert!(!ok && out.contains("not configured"), "{out}");
    assert!(read().await.iter().all(|row| old_box.is_current(&row.sealed)));

    let rotate = [("ENCRYPTION_KEY", base64(&new)), ("ENCRYPTION_KEYS_PREVIOUS", base64(&old))];
    let rotate: Vec<(&str, &str)> = rotate.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, out) = app.cli_with(&["secrets", "rotate"], &rotate, "");
    assert!(ok && out.contains("re-encrypted 3 of 3"), "{out}");
    let new_only = SecretBox::new(&new, &[]);
    for row in read().await {
        let (_, plaintext) = stored.iter().find(|(id, _)| *id == row.id.0).expect("a stored secret");
        assert!(!row.sealed.contains(plaintext.as_str()));
        let opened = new_only.open(Binding { row: &row.id.0.to_string(), purpose: &row.purpose }, &row.sealed);
        assert_eq!(opened.expect("opens with the new key alone").expose_secret(), plaintext);
    }
    let (ok, out) = app.cli_with(&["secrets", "rotate"], &rotate, "");
    assert!(ok && out.contains("re-encrypted 0 of 3"), "already rotated: {out}");
}

on_both_backends!(
    user_commands_manage_accounts,
    disabling_ends_live_sessions,
    secrets_rotate_moves_every_secret_to_the_new_key
);

/// The README's run command on a fresh machine: no configuration, SQLite file in the
/// working directory, GraphiQL on port 4000, clean exit on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_start_serves_graphiql_on_port_4000() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut server = Command::new(env!("CARGO_BIN_EXE_liteskill"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start liteskill");
    let client = reqwest::Client::new();
    let mut page = None;
    for _ in 0..100 {
        if let Ok(response) = client.get("http://127.0.0.1:4000/graphiql").send().await {
            page = Some(response.text().await.expect("page"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = page.expect("GraphiQL answers on port 4000");
    assert!(page.contains("GraphiQL"));
    assert!(dir.path().join("liteskill.db").exists(), "SQLite file created in the working directory");

    let killed = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || server.wait()).await.expect("join").expect("exit");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

#[test]
fn production_refuses_to_start_without_secrets() {
    let output = Command::new(env!("CARGO_BIN_EXE_liteskill"))
        .env_clear()
        .env("LITESKILL_ENV", "production")
        .env("PUBLIC_URL", "https://chat.example.com")
        .env("SECRET_KEY_BASE", "changeme")
        .output()
        .expect("run liteskill");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("SECRET_KEY_BASE"));
}

#[test]
fn generated_keys_are_valid_encryption_keys() {
    let output = Command::new(env!("CARGO_BIN_EXE_liteskill")).args(["key", "generate"]).output().expect("run");
    let key = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let config = liteskill::config::Config::from_lookup(|name| (name == "ENCRYPTION_KEY").then(|| key.clone()));
    assert!(config.is_ok_and(|c| c.encryption_key_bytes().len() == 32));
}
