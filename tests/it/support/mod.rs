//! Test support: a real server on a random port over a fresh database, and a small
//! GraphQL client. Every API test runs on SQLite and on PostgreSQL (`TEST_DATABASE_URL`).

pub mod db;
pub mod fake_llm;
pub mod peers;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use liteskill::app::{App, Served};
use liteskill::config::Config;
use liteskill::storage::Db;
use serde_json::{Value, json};

pub use db::TestDb;

/// Generates one `#[tokio::test]` per backend for each named scenario
/// `async fn name(app: TestApp)` in the calling module.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::TestApp::start($crate::support::TestDb::sqlite()).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = $crate::support::TestDb::postgres().await {
                        super::$name($crate::support::TestApp::start(db).await).await;
                    }
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

/// A running server and its database, torn down on drop.
pub struct TestApp {
    pub address: SocketAddr,
    pub app: Arc<App>,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    /// Owned by the first instance on a database (see [`TestApp::another_instance`]).
    database: Option<TestDb>,
}

impl TestApp {
    pub async fn start(database: TestDb) -> TestApp {
        Self::start_with(database, &[]).await
    }

    /// Starts with extra environment-style settings, e.g. `("REGISTRATION", "closed")`.
    pub async fn start_with(database: TestDb, settings: &[(&str, &str)]) -> TestApp {
        let mut app = Self::serve(database.url(), settings).await;
        app.database = Some(database);
        app
    }

    /// A second server on this app's database, as another replica would be.
    pub async fn another_instance(&self, settings: &[(&str, &str)]) -> TestApp {
        Self::serve(self.database().url(), settings).await
    }

    async fn serve(url: &str, settings: &[(&str, &str)]) -> TestApp {
        let url = url.to_owned();
        let settings: Vec<(String, String)> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let config = Config::from_lookup(|key| match key {
            "DATABASE_URL" => Some(url.clone()),
            "DATABASE_POOL_SIZE" => Some("8".into()),
            "LITESKILL_DEMO_DELAY_MS" if !settings.iter().any(|(k, _)| k == key) => Some("0".into()),
            // Fixed, so that sealed values still open after a restart.
            "ENCRYPTION_KEY" if !settings.iter().any(|(k, _)| k == key) => {
                Some("bGl0ZXNraWxsLXRlc3Qta2V5LW9mLTMyLWJ5dGVzISE=".into())
            }
            _ => settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
        })
        .expect("test configuration");
        let served: Served = App::start(config).await.expect("server starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let app = served.app.clone();
        let server = tokio::spawn(async move {
            let _ = liteskill::http::serve(listener, served, std::future::pending(), Duration::ZERO).await;
        });
        TestApp { address, app, http: reqwest::Client::new(), server, database: None }
    }

    pub fn database(&self) -> &TestDb {
        self.database.as_ref().expect("database")
    }

    /// Stops this server and starts another on the same database with `settings`.
    pub async fn restart(mut self, settings: &[(&str, &str)]) -> TestApp {
        let database = self.database.take().expect("database");
        drop(self);
        TestApp::start_with(database, settings).await
    }

    pub fn db(&self) -> &Db {
        &self.app.db
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// POSTs a GraphQL request and returns the whole response body.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self.http.post(self.url("/graphql")).json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        response.json().await.expect("JSON response")
    }

    /// Like [`TestApp::graphql`] but fails the test on any error; returns `data`.
    pub async fn ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = self.graphql(token, query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body:#}");
        body["data"].clone()
    }

    /// Registers an account and returns (token, user id).
    pub async fn register(&self, email: &str) -> (String, String) {
        let data = self
            .ok(
                None,
                "mutation($input: RegisterInput!) { register(input: $input) { token user { id } } }",
                json!({ "input": { "email": email, "password": "correct horse battery", "name": email } }),
            )
            .await;
        let token = data["register"]["token"].as_str().expect("token").to_owned();
        let id = data["register"]["user"]["id"].as_str().expect("id").to_owned();
        (token, id)
    }

    pub async fn create_conversation(&self, token: &str, title: &str) -> String {
        let data = self
            .ok(
                Some(token),
                "mutation($title: String) { createConversation(input: { title: $title }) { id } }",
                json!({ "title": title }),
            )
            .await;
        data["createConversation"]["id"].as_str().expect("id").to_owned()
    }

    pub async fn send_message(&self, token: &str, conversation: &str, content: &str) -> Value {
        self.graphql(
            Some(token),
            "mutation($input: SendMessageInput!) { sendMessage(input: $input) { id seq content } }",
            json!({ "input": { "conversationId": conversation, "content": content } }),
        )
        .await
    }

    /// Sends a message and waits until its reply has ended; returns the sendMessage response.
    pub async fn send_and_wait(&self, token: &str, conversation: &str, content: &str) -> Value {
        let sent = self.send_message(token, conversation, content).await;
        self.wait_until_idle(token, conversation).await;
        sent
    }

    /// Waits until no reply streams in the conversation.
    pub async fn wait_until_idle(&self, token: &str, conversation: &str) {
        for _ in 0..500 {
            let status = self
                .graphql(
                    Some(token),
                    "query($id: ID!) { conversation(id: $id) { status } }",
                    json!({ "id": conversation }),
                )
                .await;
            assert!(status.get("errors").is_none(), "{status:#}");
            if status["data"]["conversation"]["status"] != "STREAMING" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the reply in {conversation} never ended");
    }

    /// Number of events in the log: proof that a refused request wrote nothing.
    pub async fn event_count(&self) -> i64 {
        let mut conn = self.db().conn().await.expect("connection");
        liteskill::storage::event_store::count(&mut conn).await.expect("count")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    /// Runs the `liteskill` binary on this app's database; returns (success, stdout + stderr).
    pub fn cli(&self, args: &[&str], stdin: &str) -> (bool, String) {
        self.cli_with(args, &[], stdin)
    }

    /// [`TestApp::cli`] with more environment variables.
    pub fn cli_with(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> (bool, String) {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_liteskill"))
            .args(args)
            .envs(env.iter().copied())
            .env("DATABASE_URL", self.database().url())
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

    /// Signs in with a password; returns the whole response.
    pub async fn login(&self, email: &str, password: &str) -> Value {
        self.graphql(
            None,
            "mutation($email: String!, $password: String!) { login(input: { email: $email, password: $password }) { token user { id email role } } }",
            json!({ "email": email, "password": password }),
        )
        .await
    }
}

/// The `extensions.code` of the first error in a response.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {body:#}"))
}
