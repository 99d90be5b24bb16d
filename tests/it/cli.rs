//! The operator's CLI against a live server's database, and the default start-up.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{TestApp, error_code, on_both_backends};

fn liteskill(app: &TestApp, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_liteskill"))
        .args(args)
        .env("DATABASE_URL", app.database.url())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run liteskill");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let output = child.wait_with_output().expect("finish");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

const LOGIN: &str = "mutation($email: String!, $password: String!) { login(input: { email: $email, password: $password }) { user { role } } }";

async fn user_commands_manage_accounts(app: TestApp) {
    let (ok, out) =
        liteskill(&app, &["user", "add", "--email", "Root@Example.com", "--name", "Root"], "operator password\n");
    assert!(ok, "{out}");
    assert!(out.contains("root@example.com") && out.contains("admin"), "first account is admin: {out}");
    let (ok, out) =
        liteskill(&app, &["user", "add", "--email", "eve@example.com", "--name", "Eve"], "eve password 1\n");
    assert!(ok && out.contains("\tuser\t"), "{out}");
    let (ok, out) =
        liteskill(&app, &["user", "add", "--email", "eve@example.com", "--name", "Eve"], "eve password 1\n");
    assert!(!ok && out.contains("already exists"), "{out}");

    let login = |email: &'static str, password: &'static str| {
        let app = &app;
        async move { app.graphql(None, LOGIN, json!({ "email": email, "password": password })).await }
    };
    assert_eq!(login("eve@example.com", "eve password 1").await["data"]["login"]["user"]["role"], "USER");

    let (ok, out) = liteskill(&app, &["user", "set-role", "eve@example.com", "admin"], "");
    assert!(ok, "{out}");
    assert_eq!(login("eve@example.com", "eve password 1").await["data"]["login"]["user"]["role"], "ADMIN");

    let (ok, out) = liteskill(&app, &["user", "set-password", "eve@example.com"], "eve password 2\n");
    assert!(ok, "{out}");
    assert_eq!(error_code(&login("eve@example.com", "eve password 1").await), "UNAUTHENTICATED");
    assert!(login("eve@example.com", "eve password 2").await.get("errors").is_none());

    let (ok, out) = liteskill(&app, &["user", "disable", "eve@example.com"], "");
    assert!(ok && out.contains("disabled"), "{out}");
    assert_eq!(error_code(&login("eve@example.com", "eve password 2").await), "FORBIDDEN");

    let (ok, out) = liteskill(&app, &["user", "list"], "");
    assert!(ok && out.lines().filter(|l| l.contains('@')).count() == 2, "{out}");
    assert!(out.contains("eve@example.com\tadmin\tdisabled"), "{out}");

    let (ok, out) = liteskill(&app, &["user", "add", "--email", "x@example.com", "--name", "X"], "short\n");
    assert!(!ok && out.contains("password"), "{out}");
}

async fn disabling_ends_live_sessions(app: TestApp) {
    let (token, _) = app.register("ada@example.com").await;
    let (ok, out) = liteskill(&app, &["user", "disable", "ada@example.com"], "");
    assert!(ok, "{out}");
    assert_eq!(error_code(&app.graphql(Some(&token), "{ me { id } }", json!({})).await), "UNAUTHENTICATED");
}

on_both_backends!(user_commands_manage_accounts, disabling_ends_live_sessions);

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
